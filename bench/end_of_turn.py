"""End-of-turn delay on the corpus (bench/eot_corpus.py), through the real product with its default turn settings.

Every conversation is a call in a real livekit-server room: the agent greets, then each user utterance is spoken
by espeak-ng (two voices at two rates) and followed by silence until the agent answers. The metric is the
`end_of_turn_delay` LiveKit measured for the turn (the caller's end of speech to the turn being committed), as the
product stores it on the agent's reply; the client's own silence-to-reply time is kept beside it. The STT fake
returns each utterance's text, so the turn detector sees what a good STT would give it."""

from __future__ import annotations

import os
import time
from typing import Any

from core.settings import Settings
from tests.harness.audio import speech_wav
from tests.harness.product import Product

from .common import Results, env_settings, pct
from .eot_corpus import COMPLETE, CORPUS, INCOMPLETE, VOICES, Conversation
from .stack import create_agent, product_stack

WAITED = 1.0  # an unfinished turn must leave the caller at least this long to go on


async def _conversation(
    product: Product, fakes: Any, conv: Conversation, voice: str, wpm: int, max_delay: float
) -> list[dict[str, Any]]:
    fakes.script(stt_transcripts=[t.text for t in conv.turns], llm_echo=True)
    llm_before = len(_text_requests(fakes))
    agent_id = await create_agent(
        product,
        f"eot {conv.name}",
        systemPrompt="You are a helpful phone agent.",
        firstMessage=conv.opener,
        firstMessageMode="assistant_speaks_first",
    )
    client, tok = await product.join(agent_id, "bench")
    heard_after: list[float | None] = []
    try:
        t0 = time.monotonic()
        await client.wait_for_audio(after=t0, min_nonsilent_s=0.3, timeout=30)
        await client.wait_for_quiet(quiet_s=0.8, timeout=30)
        for turn in conv.turns:
            sent = await client.publish_wav(speech_wav(turn.text, voice=voice, speed_wpm=wpm))
            try:
                heard = await client.wait_for_audio(after=sent.last_speech_at, timeout=max_delay + 8)
                heard_after.append(heard - sent.last_speech_at)
                await client.wait_for_quiet(quiet_s=0.8, timeout=30)
            except TimeoutError:
                heard_after.append(None)
    finally:
        await client.disconnect()
    session = await product.wait_session(
        tok["sessionId"], "bench", lambda s: s["endedAt"] is not None, timeout=30, what="ended"
    )
    items = session["transcript"]
    requests = len(_text_requests(fakes)) - llm_before
    out = []
    users = [i for i, t in enumerate(items) if t["speaker"] == "USER"]
    for n, turn in enumerate(conv.turns):
        row: dict[str, Any] = {
            "conversation": conv.name,
            "voice": f"{voice}@{wpm}",
            "text": turn.text,
            "kind": turn.kind,
            "category": turn.category,
            "client_s": heard_after[n] if n < len(heard_after) else None,
            "eot_s": None,
            "stored_text": None,
            "replies": 0,
            "stale": False,
            # the conversation's LLM requests (preemptive ones included), on its first row
            "llm_requests": requests if n == 0 else 0,
        }
        if n < len(users):
            i = users[n]
            row["stored_text"] = items[i]["content"]
            nxt = users[n + 1] if n + 1 < len(users) else len(items)
            replies = [t for t in items[i + 1 : nxt] if t["speaker"] == "AGENT"]
            row["replies"] = len(replies)
            # the fake answers "You said: <the request's last user message>": a reply to anything but the turn
            # as stored was generated from a stale transcript
            row["stale"] = any(r["content"] != f"You said: {items[i]['content']}" for r in replies)
            reply = replies[0] if replies else None
            if reply and reply.get("metrics"):
                row["eot_s"] = reply["metrics"].get("end_of_turn_delay")
        out.append(row)
    return out


def _text_requests(fakes: Any) -> list[dict[str, Any]]:
    """The Gemini fake's plain text requests so far (the post-call analyses are JSON ones)."""
    return [r for r in fakes.log("gemini") if not r.get("json_mode")]


# the fake ends an utterance after 350 ms of silence: longer than any comma pause of the corpus (290 ms at most)
SCRIPT = {
    "stt_final_delay_ms": 0,
    "stt_end_silence_ms": 350,
    "llm_default_reply": "Okay.",
    # the voice section's LLM: what preemptive generation can move ahead of the end of turn
    "llm_first_token_delay_ms": 200,
    "llm_default_json": {
        "summary": "bench",
        "sentiment": "neutral",
        "sentiment_score": 0.5,
        "topics": [],
        "outcome": "bench",
        "action_items": [],
    },
}


async def run(results: Results, *, quick: bool = False) -> None:
    convs = CORPUS[:3] if quick else CORPUS
    voices = VOICES[:1] if quick or os.environ.get("VOXARENA_BENCH_EOT_VOICES") == "1" else VOICES
    # the product's own defaults for everything that decides when a turn ends
    on = await _mode(results, "1a end of turn", None, convs, voices)
    # the same corpus and voices without preemptive generation: what starting the LLM early buys, and costs
    no_preemption = {"VOXARENA_PREEMPTIVE_GENERATION": "0"}
    off = await _mode(results, "1a end of turn, preemptive generation off", None, convs, voices, no_preemption)
    _compare_preemptive(results, on, off)
    if os.environ.get("VOXARENA_BENCH_EOT_LEAN") == "1":
        # the cores section's lean settings (native VAD inline, 100 ms input frames, no AGC) change what the VAD and
        # the STT hear: the same corpus with them, first voice
        from .cores import LEAN

        lean_env = {k: v for k, v in LEAN.items() if k.startswith("VOXARENA_")}
        await _mode(results, "1a end of turn, lean audio settings", None, convs, voices[:1], lean_env)
    beside = env_settings(os.environ.get("VOXARENA_BENCH_EOT_BESIDE", ""))
    if beside:
        # the same corpus and voices with other settings (e.g. VOXARENA_VAD_ENGINE=native), after the default's
        label = ", ".join(f"{k}={v}" for k, v in beside.items())
        other = await _mode(results, f"1a end of turn, {label}", None, convs, voices, beside)
        _compare(results, "1a end of turn, the default beside " + label, on, other)
    if not quick and os.environ.get("VOXARENA_BENCH_EOT_MODEL", "1") != "0":
        # LiveKit's local audio end-of-turn model on the same corpus, one voice, for comparison
        await _mode(results, "1a end of turn, `model` mode", "model", convs, VOICES[:1])


def _compare(results: Results, section: str, a: list[dict[str, Any]], b: list[dict[str, Any]]) -> None:
    """The default's turns against another setting's, utterance by utterance: when each turn ended, when the caller
    heard the reply, and whether the same utterances were answered before the caller finished."""
    for kind in (COMPLETE, INCOMPLETE):
        rows = [(x, y) for x, y in zip(a, b, strict=True) if x["kind"] == kind]
        eot = [(y["eot_s"] - x["eot_s"]) for x, y in rows if x["eot_s"] is not None and y["eot_s"] is not None]
        heard = [(y["client_s"] - x["client_s"]) for x, y in rows if x["client_s"] and y["client_s"]]
        results.add(
            section,
            f"{kind}: the other minus the default per utterance, end_of_turn_delay / client silence to reply, p50 "
            "(min / max)",
            f"{pct(eot, 0.5) * 1000:+.0f} ({min(eot) * 1000:+.0f} / {max(eot) * 1000:+.0f}) / "
            f"{pct(heard, 0.5) * 1000:+.0f} ({min(heard) * 1000:+.0f} / {max(heard) * 1000:+.0f}) ms over "
            f"{len(heard)} turns",
        )
    early = [
        {(r["voice"], r["text"]) for r in rows if r["kind"] == INCOMPLETE and (r["eot_s"] or 0) < WAITED}
        for rows in (a, b)
    ]
    results.add(
        section,
        "incomplete utterances answered early: only the default / only the other",
        f"{len(early[0] - early[1])} / {len(early[1] - early[0])}"
        + "".join(
            f'; {who}: "{t}" ({v})'
            for who, d in (("default", early[0] - early[1]), ("other", early[1] - early[0]))
            for v, t in sorted(d)
        ),
        "0 / 0",
        early[0] == early[1],
    )


def _compare_preemptive(results: Results, on: list[dict[str, Any]], off: list[dict[str, Any]]) -> None:
    section = "1a preemptive generation"
    for kind in (COMPLETE, INCOMPLETE):
        a = [r["client_s"] for r in on if r["kind"] == kind and r["client_s"] is not None]
        b = [r["client_s"] for r in off if r["kind"] == kind and r["client_s"] is not None]
        gain = (pct(b, 0.5) - pct(a, 0.5)) * 1000
        results.add(
            section,
            f"{kind}: client silence to reply p50, on / off / gain",
            f"{pct(a, 0.5) * 1000:.0f} / {pct(b, 0.5) * 1000:.0f} / {gain:.0f} ms",
            ">= 100 ms gain" if kind == COMPLETE else "",
            gain >= 100 if kind == COMPLETE else None,
        )
    for label, rows in (("on", on), ("off", off)):
        turns = sum(1 for r in rows if r["stored_text"] is not None)
        requests = sum(r["llm_requests"] for r in rows)
        twice = sum(1 for r in rows if r["replies"] > 1)
        stale = sum(1 for r in rows if r["stale"])
        results.add(
            section,
            f"{label}: LLM requests per user turn / turns answered twice / answered to a stale transcript",
            f"{requests / turns if turns else float('nan'):.2f} ({requests} for {turns}) / {twice} / {stale}",
            "0 twice, 0 stale",
            twice == 0 and stale == 0,
        )


async def _mode(
    results: Results,
    section: str,
    mode: str | None,
    convs: tuple[Conversation, ...],
    voices: tuple[tuple[str, int], ...],
    env: dict[str, str] | None = None,
) -> list[dict[str, Any]]:
    extra = {"VOXARENA_MAX_CONCURRENT_CALLS": "64", **(env or {})}
    if mode:
        extra["VOXARENA_TURN_DETECTION"] = mode
    defaults = Settings()
    min_delay, max_delay = defaults.endpointing_min_delay, defaults.endpointing_max_delay
    rows: list[dict[str, Any]] = []
    with product_stack(f"eot-{mode or 'default'}-{len(results.raw)}", SCRIPT, extra) as (product, _, fakes):
        for voice, wpm in voices:
            for conv in convs:
                rows += await _conversation(product, fakes, conv, voice, wpm, max_delay)
    results.raw[section] = rows
    results.add(
        section,
        "settings",
        f"turn detection `{mode or defaults.turn_detection}`"
        f"{'' if mode else ' (the default)'}, min_delay {min_delay:.2f} s, max_delay {max_delay:.2f} s; "
        f"{len(rows)} turns ({len(convs)} conversations x {len(voices)} voices)",
    )
    misheard = [r for r in rows if r["stored_text"] != r["text"]]
    results.add(
        section,
        "turns stored as spoken (one user message per utterance)",
        f"{len(rows) - len(misheard)} of {len(rows)}",
        "all",
        not misheard,
    )
    for kind in (COMPLETE, INCOMPLETE):
        mine = [r for r in rows if r["kind"] == kind]
        eot = [r["eot_s"] for r in mine if r["eot_s"] is not None]
        unanswered = sum(1 for r in mine if r["client_s"] is None)
        summary = (
            f"p50 {pct(eot, 0.5) * 1000:.0f} / p95 {pct(eot, 0.95) * 1000:.0f} ms over {len(eot)} turns "
            f"({unanswered} unanswered)"
        )
        if kind == COMPLETE:
            p50, p95 = pct(eot, 0.5), pct(eot, 0.95)
            ok = p50 <= min_delay + 0.15 and p95 <= 1.0 and len(eot) == len(mine)
            results.add(
                section,
                "complete utterances: end_of_turn_delay",
                summary,
                f"p50 <= {(min_delay + 0.15) * 1000:.0f} ms, p95 <= 1000 ms",
                ok,
            )
        else:
            waited = sum(1 for r in mine if r["eot_s"] is not None and r["eot_s"] >= WAITED)
            share = waited / len(mine) if mine else 0.0
            results.add(section, "incomplete utterances: end_of_turn_delay", summary)
            results.add(
                section,
                f"incomplete utterances that waited >= {WAITED:.0f} s",
                f"{waited} of {len(mine)} ({share:.0%})",
                ">= 80 %",
                share >= 0.8,
            )
        client = [r["client_s"] for r in mine if r["client_s"] is not None]
        results.add(
            section,
            f"{kind}: client-measured silence to reply, p50 / p95",
            f"{pct(client, 0.5) * 1000:.0f} / {pct(client, 0.95) * 1000:.0f} ms",
        )
    early = sorted({r["text"] for r in rows if r["kind"] == INCOMPLETE and (r["eot_s"] or 0) < WAITED})
    if early:
        results.add(section, "incomplete utterances answered too early", "; ".join(f'"{t}"' for t in early))
    return rows
