"""Voicemail detection on its corpus (tests/harness/greetings.py), over real SIP: each greeting is played by a sipp
callee that answers an outbound call of an agent with `voicemailDetection` on; the session's `answeredBy` is the
verdict.

What this measures, and what it does not: the STT is the Deepgram fake, which transcribes each greeting as its text,
and the LLM's classification is the Gemini fake's keyword rule (tests/fakes/gemini.py `greeting_label`). So the
figures judge the product's detection path on real audio over real SIP (the answer gating, the VAD's timing that
decides a short greeting alone, the held greeting, the verdict's action and when it comes), not a model's accuracy:
that is the LLM's, and LiveKit's evaluation lists the models it checked (`voice/amd/detector.py`)."""

from __future__ import annotations

import asyncio
import time
from contextlib import ExitStack
from pathlib import Path
from typing import Any

from tests.harness.fakes_proc import start_fakes
from tests.harness.greetings import CORPUS, greeting_ulaw_wav
from tests.harness.sip import start_sip_stack

from .common import Results, median
from .stack import KEY, bench_product, create_agent

SECTION = "voicemail"
NUMBER = "+14155550142"
SCRIPT = {
    "stt_transcripts": [],
    "stt_default_transcript": "Hello?",
    "stt_end_silence_ms": 900,  # each greeting one utterance, its pauses and beep inside it
    "llm_default_reply": "Thanks, goodbye.",
}


async def _until(what: str, check: Any, timeout: float) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if got := await check():
            return got
        await asyncio.sleep(0.2)
    raise TimeoutError(f"{what} not within {timeout:.0f} s")


async def run(results: Results, *, quick: bool = False) -> None:
    corpus = CORPUS[::2] if quick else CORPUS
    work = Path("/tmp/voxarena-bench") / SECTION
    with ExitStack() as started:
        stack = await asyncio.to_thread(start_sip_stack, work / "sip")  # it runs its own event loop
        started.callback(stack.stop)
        fakes = start_fakes(work / "fakes", script=SCRIPT, api_key=KEY)
        started.callback(fakes.stop)
        product = bench_product(
            work / "product",
            stack.livekit,
            fakes,
            {"VOXARENA_SIP_OUTBOUND_TRUNK_ID": stack.trunk_id, "VOXARENA_SIP_RING_TIMEOUT_SECONDS": "10"},
        )
        started.callback(product.stop)
        agent_id = await create_agent(
            product,
            "voicemail-bench",
            firstMessage="Hello, this is the clinic calling about your appointment.",
            firstMessageMode="assistant_speaks_first",
            voicemailDetection=True,
        )
        rows = []
        for greeting in corpus:
            fakes.script(stt_transcripts=[greeting.text])
            callee = stack.start_callee("uas_answer.xml", answer_after_ms=300, play=greeting_ulaw_wav(greeting))
            status, placed = await product.request(
                "POST", "/api/calls/outbound", "bench", json={"agent_id": agent_id, "phone_number": NUMBER}
            )
            assert status == 201, placed
            sid = placed["session_id"]

            async def verdict(sid: str = sid) -> dict[str, Any] | None:
                status, s = await product.request("GET", f"/api/sessions/{sid}", "bench")
                return s if status == 200 and (s["answeredBy"] or s["status"] == "ended") else None

            session = await _until(f"{greeting.name}: a verdict", verdict, 60)
            status, page = await product.request("GET", f"/api/calls/{sid}/events", "bench")
            event = next((e for e in page.get("events", []) if e["type"] == "amd.result"), {})
            if session["status"] != "ended":  # a person: the call goes on; the bench hangs up
                await product.request("POST", "/api/override/end", "bench", json={"call_sid": sid})

            async def ended(sid: str = sid) -> dict[str, Any] | None:
                status, s = await product.request("GET", f"/api/sessions/{sid}", "bench")
                return s if status == 200 and s["status"] == "ended" else None

            session = await _until(f"{greeting.name}: the end", ended, 30)
            await asyncio.to_thread(callee.wait_exit, timeout=30)
            got = session["answeredBy"]
            rows.append((greeting, got, event.get("reason"), event.get("delay"), session["endReason"]))
            print(
                f"[{SECTION}] {greeting.name}: expected {greeting.kind}, got {got} ({event.get('reason')}), "
                f"end {session['endReason']}, verdict {event.get('delay')} s after the greeting",
                flush=True,
            )
    _report(results, rows, quick)


def _report(results: Results, rows: list[tuple[Any, str | None, Any, Any, str]], quick: bool) -> None:
    machine = [(g, got) for g, got, *_ in rows if g.machine]
    people = [(g, got) for g, got, *_ in rows if not g.machine]
    said_machine = [(g, got) for g, got, *_ in rows if got and got.startswith("machine")]
    true_pos = sum(1 for g, _ in said_machine if g.machine)
    precision = true_pos / len(said_machine) if said_machine else 0.0
    recall = true_pos / len(machine) if machine else 0.0
    hung_up_on = [g.name for g, got in people if got and got.startswith("machine")]
    exact = sum(1 for g, got, *_ in rows if got == g.kind)
    delays = [float(d) for g, _, _, d, _ in rows if d is not None]
    note = f"{len(rows)} greetings{' (quick)' if quick else ''}"
    results.add(SECTION, "machine precision", f"{precision:.2f} ({true_pos}/{len(said_machine)})", note=note)
    results.add(SECTION, "machine recall", f"{recall:.2f} ({true_pos}/{len(machine)})", note=note)
    results.add(
        SECTION,
        "people hung up on",
        f"{len(hung_up_on)} of {len(people)}" + (f": {', '.join(hung_up_on)}" if hung_up_on else ""),
        "0",
        not hung_up_on,
    )
    results.add(SECTION, "exact category", f"{exact} of {len(rows)}")
    if delays:
        results.add(SECTION, "verdict after the greeting ended, p50", f"{median(delays):.2f} s")
    results.raw[SECTION] = [
        {"greeting": g.name, "expected": g.kind, "got": got, "reason": r, "delay": d, "end": e}
        for g, got, r, d, e in rows
    ]
