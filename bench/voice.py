"""Voice-to-voice overhead and concurrency, through the real product and a real livekit-server room.

Provider fakes inject fixed latencies (STT final 100 ms after the end of speech, LLM first token 200 ms, TTS first
audio 150 ms). The client measures from its last non-silent input frame to the first non-silent agent frame it
receives; overhead = measured - injected. Interleaved with it, in the same run, a minimal hand-written asyncio agent
(bench/floor_agent.py) in a room of the same server talks to the same fakes: the floor, measured by the same client.
Runs inside the test network namespace."""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import os
import re
import time
from typing import Any

import aiohttp

from tests.harness.audio import speech_wav
from tests.harness.client import AudioRoomClient, ReceivedFrame

from .common import Results, env_settings, median, pct
from .floor_agent import FloorAgent
from .stack import KEY, bench_product, create_agent, servers

STT_MS, LLM_MS, TTS_MS = 100, 200, 150
INJECTED = (STT_MS + LLM_MS + TTS_MS) / 1000
UTTERANCE = "Hello there."
REPLY = "Okay."
# how far the bench's caller sends ahead of the wall clock: a browser's or a phone's audio thread never starves, but
# this client shares a core with livekit-server and the fakes, and a stall of its loop longer than its source held
# put a hole in the caller's own speech (the STT heard two utterances: the agent answered the first half and was cut
# off by the second: bench/README.md, section 6)
CALLER_AHEAD_S = 0.2
SCRIPT = {
    "stt_default_transcript": UTTERANCE,
    # the fake's end of speech is 100 ms of silence, and its final follows at once: 100 ms after speech ends
    "stt_end_silence_ms": STT_MS,
    "stt_final_delay_ms": 0,
    "llm_default_reply": REPLY,
    "llm_first_token_delay_ms": LLM_MS,
    "llm_chunk_delay_ms": 0,
    "llm_chunks": 1,
    "tts_first_byte_delay_ms": TTS_MS,
    "llm_default_json": {
        "summary": "bench",
        "sentiment": "neutral",
        "sentiment_score": 0.5,
        "topics": [],
        "outcome": "bench",
        "action_items": [],
    },
}


def pss_mb(pids: list[int]) -> float:
    total = 0
    for pid in pids:
        try:
            for line in open(f"/proc/{pid}/smaps_rollup"):
                if line.startswith("Pss:"):
                    total += int(line.split()[1])
        except OSError:
            pass
    return total / 1024


def product_pids(product) -> list[int]:
    from tests.harness.product import _children

    pids, frontier = [product.process.pid], [product.process.pid]
    while frontier:
        kids = _children(frontier.pop())
        pids += kids
        frontier += kids
    return pids


async def _turns(client, turns: int, out: dict[str, Any]) -> list[float]:
    """Speak, wait for the first non-silent reply frame, let it play; the same for the product and the floor."""
    wav = speech_wav(UTTERANCE)
    latencies, missed = [], 0
    heard_at: list[tuple[float, ReceivedFrame | None]] = []  # each answered turn: speech end, first reply frame
    await client.wait_for_participant(timeout=20)
    await asyncio.sleep(1.0)
    for _ in range(turns):
        sent = await client.publish_wav(wav, trail_silence=0.6)
        # this client's loop stalled past what its source held: the caller's own audio had a hole (bench/README.md)
        out["caller_starves"] = out.get("caller_starves", 0) + sent.starves
        try:
            heard = await client.wait_for_audio(after=sent.last_speech_at, timeout=5)
        except TimeoutError:
            missed += 1  # a turn never answered: counted and reported, not timed
            continue
        latencies.append(heard - sent.last_speech_at)
        heard_at.append((sent.last_speech_at, client.first_loud_frame_after(sent.last_speech_at)))
        await asyncio.sleep(0.6)  # the short reply plays out
    spans = client.gaps("arrival")
    out["gaps"] = out.get("gaps", 0) + len(spans)
    out.setdefault("gap_spans", []).extend(spans)  # (monotonic) between two loud frames' arrivals
    # the same rule on the playout clock: a hole in the audio itself (at the source, in WebRTC or the SFU), not a
    # late wake-up of this process
    out["playout_gaps"] = out.get("playout_gaps", 0) + len(client.gaps("playout"))
    # the same latencies on the playout clock: when the reply's first frame was due to play, not when this process's
    # loop took it (the client shares a core with livekit-server and the fakes, and its stalls read as latency)
    offsets = client.playout_offsets()
    out.setdefault("playout_latencies", []).extend(
        f.pos_s + offsets[f.track_sid] - spoke for spoke, f in heard_at if f is not None
    )
    for name, value in (await client.inbound_audio_stats()).items():
        out.setdefault("inbound", {})[name] = out.get("inbound", {}).get(name, 0) + value
    out["missed"] = out.get("missed", 0) + missed
    out.setdefault("latencies", []).extend(latencies)
    return latencies


async def _call(product, agent_id: str, user: str, turns: int, out: dict[str, Any]) -> None:
    started, started_wall = time.monotonic(), time.time()
    client, tok = await product.join(agent_id, user)
    try:
        # the caller's microphone is up as it joins, as a web caller's is: a caller with no track and an agent
        # joining at the same moment see each other only on livekit-server's 3 s batch (bench/README.md, cores)
        await client.publish_microphone(ahead_s=CALLER_AHEAD_S)
        await client.wait_for_participant(timeout=20)
        out.setdefault("agent_join_s", []).append(time.monotonic() - started)  # token to the agent in the room
        # the job's start, in the product log's clock: from the token to the caller's first word (`_turns` waits 1 s)
        out.setdefault("job_starts", []).append((started_wall, time.time() + 1.0))
        latencies = await _turns(client, turns, out)
    finally:
        await client.disconnect()
        out.setdefault("call_seconds", []).append(time.monotonic() - started)
    out.setdefault("sessions", []).append((tok["sessionId"], latencies))


async def _floor_call(server, fakes_urls: dict[str, str], turns: int, out: dict[str, Any]) -> None:
    room = f"floor-{time.monotonic_ns()}"
    agent = FloorAgent(server.url, server.token("floor-agent", room), fakes_urls, KEY)
    await agent.start()
    client = AudioRoomClient(server.url, server.token("floor-caller", room), identity="floor-caller")
    await client.connect()
    try:
        await client.publish_microphone(ahead_s=CALLER_AHEAD_S)
        latencies = await _turns(client, turns, out)
    finally:
        await client.disconnect()
        await agent.stop()
    out.setdefault("pairs", []).extend(zip(latencies, agent.v2v, strict=False))  # a turn the agent missed has no v2v


async def _stored(product, sessions: list[tuple[str, list[float]]]):
    """The stored per-turn figures of the calls against what the client measured: |e2e_latency - client| (ms),
    client - voice_to_voice (ms), and each hop's mark (after the last loud frame) and length (ms) by its name."""
    diffs: list[float] = []
    gaps: list[float] = []
    hops_at: dict[str, list[float]] = {}
    hops_s: dict[str, list[float]] = {}
    for sid, measured in sessions:
        s = await product.wait_session(sid, "bench", lambda s: s["endedAt"] is not None, timeout=30, what="ended")
        replies = [t["metrics"] for t in s["transcript"] if t["speaker"] == "AGENT" and t.get("metrics")]
        for m, client_s in zip(replies, measured, strict=False):  # replies the client did not time are skipped
            if m.get("e2e_latency"):
                diffs.append(abs(m["e2e_latency"] - client_s) * 1000)
            if m.get("voice_to_voice"):
                gaps.append((client_s - m["voice_to_voice"]) * 1000)
                for h in m["hops"]:
                    hops_at.setdefault(h["mark"], []).append(h["at"] * 1000)
                    hops_s.setdefault(h["mark"], []).append(h["seconds"] * 1000)
    return diffs, gaps, hops_at, hops_s


def _listed(found: list[tuple[int, str]]) -> str:
    """Loop blocks as a count, the longest, and the worst three with where and what they were."""
    worst = sorted(found, reverse=True)[:3]
    return f"{len(found)}" + (
        f" / {worst[0][0]} ms; " + "; ".join(f"{ms} ms {where}" for ms, where in worst) if worst else ""
    )


def _spread(values: list[float]) -> str:
    return f"{min(values):.0f} / {median(values):.0f} / {max(values):.0f} over {len(values)}"


async def _report_beside(
    results: Results,
    other,
    settings: dict[str, str],
    out: dict[str, Any],
    rounds: list[dict[str, float]],
    logged: str,
) -> None:
    """Section 1's rows for the product with other settings, measured in the same rounds as the product and the
    floor: its p50 against both, round by round, and its STT hop beside the product's."""
    named = ", ".join(f"{k}={v}" for k, v in settings.items())
    section = f"1 voice beside ({named})"
    lat = out["latencies"]
    results.raw["voice_beside"] = {"settings": settings, "latencies": lat, "rounds": rounds}
    results.add(
        section,
        "client-measured voice-to-voice p50 / p95; unanswered",
        f"{pct(lat, 0.5) * 1000:.0f} / {pct(lat, 0.95) * 1000:.0f} ms over {len(lat)} turns; {out['missed']}",
    )
    vs_floor = [r["beside"] - r["floor"] for r in rounds]
    vs_product = [r["beside"] - r["product"] for r in rounds]
    results.add(
        section,
        "beside p50 - floor p50, rounds' p50s: min / median / max",
        f"{median(vs_floor):.0f} ms ({_spread(vs_floor)})",
        "<= 30 ms",
        median(vs_floor) <= 30,
    )
    results.add(section, "beside p50 - product p50, rounds' p50s: min / median / max", _spread(vs_product))
    _, gaps, hops_at, hops_s = await _stored(other, out["sessions"])
    results.add(
        section,
        "each hop (time since the mark before it), p50 / p95 (ms)",
        "; ".join(
            f"{k} {median(hops_s[k]):.0f}/{pct(hops_s[k], 0.95):.0f}"
            for k in sorted(hops_at, key=lambda k: median(hops_at[k]))
        ),
    )
    results.add(section, "client-measured minus stored voice_to_voice, median", f"{median(gaps):.0f} ms")
    blocks = loop_blocks(logged, out.get("job_starts", []))
    results.add(
        section, f"job event-loop blocks over {BLOCK_WARN_MS} ms at job start, count / longest", _listed(blocks)
    )


def _jitter_ms(out: dict[str, Any]) -> float:
    inbound = out.get("inbound", {})
    emitted = inbound.get("jitter_buffer_emitted_count", 0)
    return inbound.get("jitter_buffer_delay", 0) / emitted * 1000 if emitted else float("nan")


READ_RATE = 200  # API reads per second beside the calls
# LiveKit's job-loop monitor logs every block of a job's event loop over this (the job-start target: none over 20 ms)
BLOCK_WARN_MS = 20
_BLOCKED = re.compile(r"event loop blocked for (\d+)ms([^;]*)")
# what the product's log adds to each (worker/server.py LoopBlockDetail): the loop thread's CPU and GC time
_BLOCK_DETAIL = re.compile(r"\[(cpu [^\]]*)\]\s*$")


_HOLES = re.compile(r"agent audio: [\d.]+ s to the room, (\d+) holes at the audio source")


def source_holes(log_text: str) -> tuple[int, int]:
    """(calls reported, holes) of the agent audio's holes at the room's audio source, as the jobs logged them at
    their calls' ends (worker/audio_holes.py)."""
    counts = [int(m.group(1)) for m in _HOLES.finditer(log_text)]
    return len(counts), sum(counts)


def log_since(product, offset: int) -> str:
    """What the product logged from byte `offset` on (the log file is appended to run after run)."""
    with product.process.log_path.open("rb") as f:
        f.seek(offset)
        return f.read().decode(errors="replace")


def loop_blocks(log_text: str, spans: list[tuple[float, float]] | None = None) -> list[tuple[int, str]]:
    """(milliseconds, where, with its CPU and GC time) of each block LiveKit's loop monitor logged; with `spans`
    (time.time() seconds), only those logged inside one of them, by each log line's own timestamp."""
    found = []
    for line in log_text.splitlines():
        m = _BLOCKED.search(line)
        if m is None:
            continue
        if spans is not None:
            try:
                at = datetime.datetime.strptime(line[:23], "%Y-%m-%d %H:%M:%S,%f").timestamp()
            except ValueError:
                continue
            if not any(start <= at <= end for start, end in spans):
                continue
        detail = _BLOCK_DETAIL.search(line)
        where = m.group(2).strip()
        found.append((int(m.group(1)), f"{where} ({detail.group(1)})".strip() if detail else where))
    return found


ADMIN = "bench-admin"


async def reading_tenant(product, user: str, rate: float) -> dict[str, str]:
    """A tenant for the bench user whose rate limit fits the reads (twice their rate; the default is 100/s per
    credential), made the product's tenant for every later request; returns the headers of an API key in it."""
    status, tenant = await product.request(
        "POST", "/tenants", ADMIN, json={"name": "bench", "owner_user_id": user, "rate_limit_rps": 2 * rate}
    )
    assert status == 201, tenant
    product.tenant = tenant["id"]
    status, key = await product.request("POST", "/api/keys", user, json={"name": "bench reads"})
    assert status in (200, 201), key
    return {"X-API-Key": key["key"]}


async def _api_reads(product, headers: dict[str, str], rate: float, stop: asyncio.Event, out: dict[str, int]) -> None:
    """`rate` reads per second until `stop`: `ok`, `refused` (429: the rate limit), `unanswered` (still waiting 30 s
    after `stop`) and `failed` (anything else) counted apart, the first failure kept."""
    paths = ["/api/sessions?limit=10", "/api/costs/summary", "/api/agents", "/api/dashboard/metrics"]
    pending: set[asyncio.Task[None]] = set()
    async with aiohttp.ClientSession(headers=headers) as http:
        i, t0 = 0, time.monotonic()

        async def one(path: str) -> None:
            try:
                async with http.get(product.base_url + path) as r:
                    await r.read()
                    kind = "ok" if r.status == 200 else "refused" if r.status == 429 else "failed"
                    if kind == "failed":
                        out.setdefault("first_failure", f"{path}: {r.status}")  # type: ignore[arg-type]
            except aiohttp.ClientError as e:
                kind = "failed"
                out.setdefault("first_failure", f"{path}: {e!r}")  # type: ignore[arg-type]
            out[kind] = out.get(kind, 0) + 1

        while not stop.is_set():
            task = asyncio.ensure_future(one(paths[i % len(paths)]))
            pending.add(task)
            task.add_done_callback(pending.discard)
            i += 1
            await asyncio.sleep(max(0.0, t0 + i / rate - time.monotonic()))
        if pending:
            await asyncio.wait(pending, timeout=30)
        # still unanswered: the API fell behind the reads (counted apart; closing the session would fail them)
        out["unanswered"] = len(pending)
        for task in list(pending):
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)


# `stt` turn detection with min_delay 0 (the STT's endpointing only, as the floor); the worker never says it is full
# itself, so the bench measures capacity rather than admission (livekit-server still offers no job to a worker whose
# load is 1.0: its processes used the whole of their cores over the load's window)
VOICE_ENV = {
    "VOXARENA_TURN_DETECTION": "stt",
    "VOXARENA_ENDPOINTING_MIN_DELAY": "0",
    "VOXARENA_LOAD_THRESHOLD": "1.5",
    "VOXARENA_NUM_IDLE_PROCESSES": "2",
    "VOXARENA_MAX_CONCURRENT_CALLS": "64",
    "VOXARENA_ADMIN_USERS": ADMIN,
}


async def run(results: Results, *, quick: bool = False) -> None:
    executor = os.environ.get("VOXARENA_BENCH_EXECUTOR", "process")
    env = {**VOICE_ENV, "VOXARENA_JOB_EXECUTOR": executor, "LIVEKIT_AGENTS_LOOP_BLOCK_WARN_MS": str(BLOCK_WARN_MS)}
    # product settings to try, e.g. VOXARENA_BENCH_VOICE_SETTINGS="VOXARENA_AUDIO_INPUT_FRAME_MS=20" (the product
    # harness passes no VOXARENA_ variable of the bench's own environment through)
    env.update(env_settings(os.environ.get("VOXARENA_BENCH_VOICE_SETTINGS", "")))
    # a second product with other settings measured inside section 1, its calls interleaved with the product's and
    # the floor's: VOXARENA_BENCH_VOICE_BESIDE="VOXARENA_AUDIO_INPUT_FRAME_MS=20"
    beside = env_settings(os.environ.get("VOXARENA_BENCH_VOICE_BESIDE", ""))
    with servers("voice", SCRIPT) as (work, server, fakes), contextlib.ExitStack() as stop:
        product = bench_product(work / "product", server, fakes, env)
        stop.callback(product.stop)
        other = None
        if beside:  # its own agent name, so its calls' jobs go to it
            other = bench_product(
                work / "product-beside", server, fakes, {**env, **beside, "VOXARENA_AGENT_NAME": "voxarena-beside"}
            )
            stop.callback(other.stop)
        await _run(results, product, server, fakes, executor, quick, (other, beside))


async def _run(
    results: Results, product, server, fakes, executor: str, quick: bool, beside: tuple[Any, dict[str, str]]
) -> None:
    log_start = product.process.log_path.stat().st_size  # the log file is appended to run after run
    other, other_settings = beside
    other_start = other.process.log_path.stat().st_size if other else 0
    reader = await reading_tenant(product, "bench", READ_RATE)
    agent_id = await create_agent(product, "bench")
    other_agent = await create_agent(other, "bench") if other else ""
    single_turns = 40 if quick else 200
    # 1. one call at a time, with the floor (and the product beside, if any) measured in between, same run
    single: dict[str, Any] = {}
    calls = 2 if quick else 5
    floor_out: dict[str, Any] = {}
    other_out: dict[str, Any] = {}
    each = single_turns // calls
    runs = {
        "product": (single, lambda: _call(product, agent_id, "bench", each, single)),
        "floor": (floor_out, lambda: _floor_call(server, fakes.urls, each, floor_out)),
    }
    if other:
        runs["beside"] = (other_out, lambda: _call(other, other_agent, "bench", each, other_out))
    # each round's p50 of each: product - floor (and beside - floor, beside - product) per round is the spread of
    # repeated runs
    rounds: list[dict[str, float]] = []
    names = list(runs)
    for i in range(calls):  # interleaved, so all see the same machine; the order turns each round
        seen = {name: len(out.get("latencies", [])) for name, (out, _) in runs.items()}
        for name in names[i % len(names) :] + names[: i % len(names)]:
            await runs[name][1]()
        got = {name: out.get("latencies", [])[seen[name] :] for name, (out, _) in runs.items()}
        if all(got.values()):
            rounds.append({name: pct(lat, 0.5) * 1000 for name, lat in got.items()})
    pair_gaps = [r["product"] - r["floor"] for r in rounds]
    lat = single["latencies"]
    floor = floor_out["latencies"]
    logged = log_since(product, log_start)
    blocks = loop_blocks(logged)
    at_start = loop_blocks(logged, single.get("job_starts", []))

    results.add(
        "1 voice",
        f"job event-loop blocks over {BLOCK_WARN_MS} ms at job start (token to the caller's first word, {calls}"
        " calls), count / longest",
        _listed(at_start),
        "0",
        not at_start,
    )
    results.add(
        "1 voice",
        f"job event-loop blocks over {BLOCK_WARN_MS} ms in all ({calls} calls: job start and turns), count / longest",
        _listed(blocks),
    )
    over = [x - INJECTED for x in lat]
    p50, p95 = pct(over, 0.5) * 1000, pct(over, 0.95) * 1000
    f50 = pct(floor, 0.5) * 1000
    results.raw["voice_single"] = {"latencies": lat, "floor": floor}
    results.add("1 voice", "job executor", executor)
    results.add(
        "1 voice",
        "turns measured",
        f"{len(lat)} in {calls} calls, one call at a time; {single['missed']} turns got no reply within 5 s",
    )
    results.add(
        "1 voice",
        "client-measured voice-to-voice p50 / p95",
        f"{pct(lat, 0.5) * 1000:.0f} / {pct(lat, 0.95) * 1000:.0f} ms (injected {INJECTED * 1000:.0f} ms)",
    )
    results.add("1 voice", "overhead p50", f"{p50:.0f} ms", "<= 20 ms", p50 <= 20)
    results.add("1 voice", "overhead p95", f"{p95:.0f} ms", "<= 50 ms", p95 <= 50)
    results.add(
        "1 voice",
        "floor: hand-written agent in the same room, same fakes, p50 / p95",
        f"{f50:.0f} / {pct(floor, 0.95) * 1000:.0f} ms over {len(floor)} turns ({floor_out['missed']} unanswered)",
    )
    gap = pct(lat, 0.5) * 1000 - f50
    results.add(
        "1 voice",
        "product p50 - floor p50 (each pair of calls: min / median / max)",
        f"{gap:.0f} ms ({min(pair_gaps):.0f} / {median(pair_gaps):.0f} / {max(pair_gaps):.0f} over {len(pair_gaps)})",
        "<= 30 ms",
        gap <= 30,
    )
    # stored per-turn latencies against what the client measured
    diffs, gaps, hops_at, hops_s = await _stored(product, single["sessions"])
    results.add(
        "1 voice",
        "stored e2e_latency (LiveKit's) vs client, median |diff| / p95",
        f"{median(diffs):.0f} / {pct(diffs, 0.95):.0f} ms over {len(diffs)} turns",
    )
    floor_gaps = [(c - v) * 1000 for c, v in floor_out.get("pairs", [])]
    share = median(floor_gaps)
    results.add(
        "1 voice",
        "transport share: client-measured minus the floor's own voice-to-voice, median",
        f"{share:.0f} ms over {len(floor_gaps)} turns",
    )
    results.add(
        "1 voice",
        "the caller's jitter buffer (WebRTC's inbound-rtp counters), mean delay of a played sample: product / floor",
        f"{_jitter_ms(single):.0f} / {_jitter_ms(floor_out):.0f} ms",
    )
    results.add(
        "1 voice",
        "client-measured minus stored voice_to_voice, median / p95",
        f"{median(gaps):.0f} / {pct(gaps, 0.95):.0f} ms over {len(gaps)} turns",
        "<= transport share + 20 ms",
        median(gaps) <= share + 20,
    )
    order = sorted(hops_at, key=lambda k: median(hops_at[k]))
    results.add(
        "1 voice",
        "where the time goes: each mark after the last loud frame, p50 / p95 (ms)",
        "; ".join(f"{k} {median(hops_at[k]):.0f}/{pct(hops_at[k], 0.95):.0f}" for k in order),
    )
    results.add(
        "1 voice",
        "each hop (time since the mark before it), p50 / p95 (ms)",
        "; ".join(f"{k} {median(hops_s[k]):.0f}/{pct(hops_s[k], 0.95):.0f}" for k in order),
    )
    if other:
        await _report_beside(results, other, other_settings, other_out, rounds, log_since(other, other_start))

    # 2. concurrency, with 200 requests/s of API reads running
    p95_single = None
    mem: dict[int, float] = {}
    steps = os.environ.get("VOXARENA_BENCH_VOICE_STEPS", "1,4" if quick else "1,4,8,12")
    for n in (int(x) for x in steps.split(",")):
        out: dict[str, Any] = {}
        stop = asyncio.Event()
        reads: dict[str, int] = {}
        reading = asyncio.ensure_future(_api_reads(product, reader, READ_RATE, stop, reads))
        await asyncio.sleep(2)
        tasks = [asyncio.ensure_future(_call(product, agent_id, "bench", 8 if quick else 15, out)) for _ in range(n)]
        await asyncio.sleep(6)
        mem[n] = pss_mb(product_pids(product))
        failed = [r for r in await asyncio.gather(*tasks, return_exceptions=True) if isinstance(r, BaseException)]
        out.setdefault("latencies", [])
        stop.set()
        await reading
        _, health = await product.request("GET", "/health", None)
        o95 = (pct(out["latencies"], 0.95) - INJECTED) * 1000
        if n == 1:
            p95_single = o95
        loop = health["event_loop"]  # with the garbage collector's full collections since start, which stop it
        lag = loop["lag_p99_ms"]
        results.raw.setdefault("voice_concurrency", {})[n] = {
            "latencies": out["latencies"],
            "gaps": out["gaps"],
            "reads": reads,
            "loop": loop,
            "pss_mb": mem[n],
        }
        results.add(
            "2 concurrency",
            f"{n} calls: overhead p95",
            f"{o95:.0f} ms",
            "<= 2x single" if n > 1 else "",
            (o95 <= 2 * p95_single) if n > 1 else None,
        )
        results.add(
            "2 concurrency",
            f"{n} calls: loop lateness p99 (the API process's full garbage collections since start: how many, the"
            " longest of the last 100)",
            f"{lag:.1f} ms ({loop.get('gc_full_collections', '?')}, {loop.get('gc_full_pause_max_ms', '?')} ms)",
            "<= 10 ms",
            lag <= 10,
        )
        results.add(
            "2 concurrency",
            f"{n} calls: audio gaps / unanswered turns",
            f"{out.get('gaps', 0)} / {out.get('missed', 0)}",
            "0 gaps",
            out.get("gaps", 0) == 0,
        )
        results.add(
            "2 concurrency",
            f"{n} calls: API reads ok / refused by the rate limit / unanswered 30 s after the step / failed otherwise",
            " / ".join(str(reads.get(kind, 0)) for kind in ("ok", "refused", "unanswered", "failed"))
            + (f" (first: {reads['first_failure']})" if reads.get("first_failure") else ""),
            "0 failed",
            reads.get("failed", 0) == 0,
        )
        if failed:
            results.add("2 concurrency", f"{n} calls: calls that failed", f"{len(failed)}: {failed[0]}", "0", False)
    ns = sorted(mem)
    if len(ns) < 2:  # one step (VOXARENA_BENCH_VOICE_STEPS=1): nothing to compare
        return
    per_call = (mem[ns[-1]] - mem[ns[0]]) / (ns[-1] - ns[0])
    results.add(
        "2 concurrency",
        "memory per added call (PSS of the process tree)",
        f"{per_call:.0f} MB ({', '.join(f'{n}: {mem[n]:.0f} MB' for n in ns)})",
        "<= 30 MB",
        per_call <= 30,
    )
