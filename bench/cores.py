"""Calls per core: the product (API, worker and job processes) pinned to core 0 with `taskset -c 0`; livekit-server,
the provider fakes and this bench client on core 1. For each step of concurrent calls: p95 overhead (client-measured
voice-to-voice minus what the fakes inject, as in the voice section), audio gaps, the product's event-loop lateness,
CPU-ms per call-second and memory per added call.

Two or more products run on the same core, one per variant (`VARIANTS`: the job executor, `process` or `thread`,
and the lean settings), each with its own agent name on the same livekit-server and fakes; each step runs on one
product while the others idle, in turn, so all see the same machine within minutes of each other. Calls of a step
arrive `ARRIVAL_S` apart (not all in one instant)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from pathlib import Path
from typing import Any

from api.loopmon import LoopMonitor
from tests.harness.product import Product, job_process_pids
from worker.load import proc_tree_cpu_seconds

from .common import Results, env_settings, median, pct
from .stack import bench_product, create_agent, servers
from .voice import INJECTED, SCRIPT, VOICE_ENV, _call, log_since, product_pids, pss_mb, source_holes

PRODUCT_CORE, REST_CORE = 0, 1
STEPS = (1, 2, 4, 6, 8, 10, 12)
# What runs side by side (`VOXARENA_BENCH_CORES_VARIANTS`, default "process,hosted-lean": the defaults beside the
# profile that holds the most calls per core): the job executor, LiveKit's
# native VAD (one model shared by the job processes) in place of the onnx one, and the settings that trade a little
# latency for fewer wake-ups per call (RoomIO frames of 100 ms instead of 20, no AGC, no LiveKit job-loop monitor).
NATIVE = {"VOXARENA_VAD_ENGINE": "native"}
LEAN = {
    **NATIVE,
    "VOXARENA_AUDIO_INPUT_FRAME_MS": "100",
    "VOXARENA_AUTO_GAIN_CONTROL": "0",
    "LIVEKIT_AGENTS_LOOP_BLOCK_WARN_MS": "0",
}
VARIANTS: dict[str, dict[str, str]] = {
    "process": {"VOXARENA_JOB_EXECUTOR": "process"},
    "thread": {"VOXARENA_JOB_EXECUTOR": "thread"},
    "process-native": {"VOXARENA_JOB_EXECUTOR": "process", **NATIVE},
    # the VAD's inference handed to a thread each 32 ms window, as LiveKit runs it (inline on the loop by default)
    "process-vad-thread": {"VOXARENA_JOB_EXECUTOR": "process", "VOXARENA_VAD_INLINE": "false"},
    # the defaults with 50 ms input frames (the default until 2026-12-05; each reply ~25 ms later: section 1)
    "process-50ms": {"VOXARENA_JOB_EXECUTOR": "process", "VOXARENA_AUDIO_INPUT_FRAME_MS": "50"},
    "process-lean": {"VOXARENA_JOB_EXECUTOR": "process", **LEAN},
    # the lean settings but the default 20 ms input frames: what the frames buy apart from the rest
    "process-lean20": {"VOXARENA_JOB_EXECUTOR": "process", **LEAN, "VOXARENA_AUDIO_INPUT_FRAME_MS": "20"},
    "thread-lean": {"VOXARENA_JOB_EXECUTOR": "thread", **LEAN},
    # several calls per job process, each on its own thread (worker/job_hosts.py; VOXARENA_CALLS_PER_HOST, 4)
    "hosted": {"VOXARENA_JOB_EXECUTOR": "hosted"},
    "hosted-lean": {"VOXARENA_JOB_EXECUTOR": "hosted", **LEAN},
}
ARRIVAL_S = 0.5
# a wake-up of the client's loop this late (with 10 ms frames) opens a gap of over 60 ms in the frames' arrival times
CLIENT_STALL_S = 0.05
# 25 turns of ~2.4 s: a step lasts over a minute, longer than the product's loop-lateness window (3,000 wake-ups of
# 20 ms), so the `/health` figure read at the end of a step is that step's alone
TURNS = 25
TICK = os.sysconf("SC_CLK_TCK")
WARMUP_TURNS = 3


class ClientStalls(LoopMonitor):
    """This client's loop monitor, keeping each stall over `CLIENT_STALL_S` as the span its loop could not run:
    frames are stamped as this loop takes them, so a gap that spans a stall may be this client's, not the room's."""

    def __init__(self) -> None:
        super().__init__(interval=0.01, window=1_000_000)
        self.spans: list[tuple[float, float]] = []

    async def _tick(self) -> None:
        before = len(self.samples)
        await super()._tick()
        if len(self.samples) > before and self.samples[-1] > CLIENT_STALL_S and self._last is not None:
            self.spans.append((self._last - self.samples[-1] - self.interval, self._last))

    def explains(self, gap: tuple[float, float]) -> bool:
        return any(start < gap[1] and gap[0] < end for start, end in self.spans)


def unpinned(pids: list[int], core: int) -> list[tuple[int, set[int]]]:
    """Threads of `pids` allowed anywhere but `core`."""
    bad = []
    for pid in pids:
        for task in Path(f"/proc/{pid}/task").glob("*"):
            with contextlib.suppress(OSError):
                allowed = os.sched_getaffinity(int(task.name))
                if allowed != {core}:
                    bad.append((int(task.name), allowed))
    return bad


def core_busy_seconds(core: int) -> float:
    """Seconds core `core` spent busy (not idle, not waiting for I/O) since boot, whoever ran."""
    for line in Path("/proc/stat").read_text().splitlines():
        if line.startswith(f"cpu{core} "):
            ticks = [int(x) for x in line.split()[1:]]
            return (sum(ticks[:8]) - ticks[3] - ticks[4]) / TICK
    raise RuntimeError(f"no cpu{core} in /proc/stat")


def _loadavg() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


async def _utterances(fakes) -> float:
    """The utterances the STT fake (as Deepgram) has heard so far."""
    return (await asyncio.to_thread(fakes.counters)).get("deepgram", {}).get("utterances", 0)


async def _step(
    product: Product, fakes, agent_id: str, n: int, variant: str, turns: int, rest: list[int]
) -> dict[str, Any]:
    executor = VARIANTS[variant]["VOXARENA_JOB_EXECUTOR"]
    out: dict[str, Any] = {"load_before": _loadavg(), "turns_sent": n * turns}
    log_start = product.process.log_path.stat().st_size
    out["idle_job_processes"] = len(job_process_pids(product)) if executor != "thread" else None
    # utime + stime of the tree, plus what its reaped job processes left in the forkserver's cutime + cstime
    cpu0, busy0, t0 = proc_tree_cpu_seconds(product.process.pid), core_busy_seconds(PRODUCT_CORE), time.monotonic()
    # this client's own loop: a stall of it delays every received frame, which reads as a hole in the agent's audio
    client_loop = ClientStalls()
    client_loop.start()
    # the caller's utterances as the STT heard them: one per turn unless an utterance reached it with a hole
    utterances0 = await _utterances(fakes)

    async def call(i: int) -> None:
        await asyncio.sleep(i * ARRIVAL_S)
        await _call(product, agent_id, "bench", turns, out)

    tasks = [asyncio.ensure_future(call(i)) for i in range(n)]
    # memory and affinity while every call of the step is in its turns
    await asyncio.sleep(n * ARRIVAL_S + 8)
    pids = product_pids(product)
    out["pss_mb"] = pss_mb(pids)
    out["processes"] = len(pids)
    out["unpinned"] = unpinned(pids, PRODUCT_CORE) + unpinned(rest, REST_CORE)
    if out["unpinned"]:
        for t in tasks:
            t.cancel()
        raise RuntimeError(f"threads on the wrong core ({variant} step, {n} calls): {out['unpinned'][:5]}")
    done, late = await asyncio.wait(tasks, timeout=n * ARRIVAL_S + turns * 8 + 60)
    for t in late:
        t.cancel()
    out["failed"] = [repr(t.exception()) for t in done if not t.cancelled() and t.exception()] + ["step timeout"] * len(
        late
    )
    _, health = await product.request("GET", "/health", None)
    out["loop"] = health["event_loop"]
    await client_loop.stop()
    out["client_stalls"] = len(client_loop.spans)
    out["client_lag_max_ms"] = max(client_loop.samples, default=0.0) * 1000
    out["gaps_in_client_stalls"] = sum(1 for gap in out.get("gap_spans", []) if client_loop.explains(gap))
    # the post-call analyses and the job processes' exits belong to the calls' cost
    await asyncio.to_thread(fakes.wait_idle, quiet_s=1.5, timeout=60)
    for _ in range(60):
        if executor == "thread" or len(job_process_pids(product)) <= out["idle_job_processes"]:
            break
        await asyncio.sleep(0.5)
    out["cpu_s"] = proc_tree_cpu_seconds(product.process.pid) - cpu0
    out["utterances"] = await _utterances(fakes) - utterances0
    # the holes the jobs counted at their rooms' audio sources (logged at each call's end): beside the client's
    # gaps, they say on which side of the room a gap opened
    logged = log_since(product, log_start)
    if "audio source was not found" in logged:
        raise RuntimeError(f"{variant}: a job could not count its audio source's holes (see the product's log)")
    out["source_reports"], out["source_holes"] = source_holes(logged)
    # what else ran on the product's core meanwhile (another program on a shared machine): the step's disturbance
    out["others_on_core"] = max(0.0, core_busy_seconds(PRODUCT_CORE) - busy0 - out["cpu_s"]) / (time.monotonic() - t0)
    return out


async def run(results: Results, *, quick: bool = False) -> None:
    if not hasattr(os, "sched_setaffinity") or not {PRODUCT_CORE, REST_CORE} <= os.sched_getaffinity(0):
        results.add("6 calls per core", "skipped", f"needs cores {PRODUCT_CORE} and {REST_CORE}")
        return
    before = os.sched_getaffinity(0)
    _pin_self({REST_CORE})  # this client; livekit-server and the fakes inherit it
    try:
        await _run(results, quick)
    finally:
        _pin_self(before)


def _pin_self(cores: set[int]) -> None:
    """Every thread of this process (sched_setaffinity(0) moves the calling thread only); later threads inherit."""
    for task in Path("/proc/self/task").glob("*"):
        with contextlib.suppress(OSError):
            os.sched_setaffinity(int(task.name), cores)


async def _run(results: Results, quick: bool) -> None:
    steps, turns = ((1, 2), 4) if quick else (STEPS, TURNS)
    if os.environ.get("VOXARENA_BENCH_CORES_STEPS"):
        steps = tuple(int(n) for n in os.environ["VOXARENA_BENCH_CORES_STEPS"].split(","))
    variants = [v.strip() for v in os.environ.get("VOXARENA_BENCH_CORES_VARIANTS", "process,hosted-lean").split(",")]
    with servers("cores", SCRIPT) as (work, server, fakes), contextlib.ExitStack() as stop:
        rest = [server.process.pid, fakes.process.pid, os.getpid()]
        assert not unpinned(rest, REST_CORE), unpinned(rest, REST_CORE)
        products: dict[str, Product] = {}
        agents: dict[str, str] = {}
        for ex in variants:
            products[ex] = bench_product(
                work / f"product-{ex}",
                server,
                fakes,
                {
                    **VOICE_ENV,
                    **VARIANTS[ex],
                    "VOXARENA_AGENT_NAME": f"voxarena-{ex}",
                    # what LiveKit sizes its pool by (it reads no affinity): the one core this product has
                    "NUM_CPUS": "1",
                    # settings to try on every variant, e.g. "LIVEKIT_AGENTS_LOOP_BLOCK_WARN_MS=100"
                    **env_settings(os.environ.get("VOXARENA_BENCH_CORES_SETTINGS", "")),
                },
                argv_prefix=("taskset", "-c", str(PRODUCT_CORE)),
            )
            stop.callback(products[ex].stop)
            agents[ex] = await create_agent(products[ex], f"cores-{ex}")
        for ex, product in products.items():
            bad = unpinned(product_pids(product), PRODUCT_CORE)
            if bad:
                raise RuntimeError(f"{ex} product not pinned to core {PRODUCT_CORE}: {bad[:5]}")
        # one unmeasured call of WARMUP_TURNS per product first: what its first call builds once (the API's and
        # the analysis's first imports and schemas, the first job's pool) is not a call's cost
        for ex, product in products.items():
            print(f"[cores] {ex}: a warm-up call", flush=True)
            await _call(product, agents[ex], "bench", WARMUP_TURNS, {})
        await asyncio.to_thread(fakes.wait_idle, quiet_s=1.5, timeout=60)
        raw: dict[str, dict[int, dict[str, Any]]] = {ex: {} for ex in variants}
        results.raw["cores"] = raw
        for n in steps:
            for ex in variants:
                print(f"[cores] {ex}: {n} calls (load {_loadavg()})", flush=True)
                raw[ex][n] = await _step(products[ex], fakes, agents[ex], n, ex, turns, rest)
    _report(results, raw, steps)


def _report(results: Results, raw: dict[str, dict[int, dict[str, Any]]], steps: tuple[int, ...]) -> None:
    section = "6 calls per core"
    results.add(
        section,
        "setup",
        f"product on core {PRODUCT_CORE} (`taskset -c {PRODUCT_CORE}`, every thread of its "
        f"tree checked), livekit-server + fakes + client on core {REST_CORE}; calls {ARRIVAL_S} s apart; "
        f"{len(next(iter(raw.values()))[steps[0]].get('latencies', []))} turns per call at 1",
    )
    for ex, by_n in raw.items():
        first = by_n[steps[0]]
        single = {clock: _overhead_p95(first, clock) for clock in CLOCKS}
        pss1 = first["pss_mb"]
        best = dict.fromkeys(CLOCKS, 0)
        for n in steps:
            s = by_n[n]
            missed, failed = s.get("missed", 0), s["failed"]
            call_s = sum(s.get("call_seconds", []))
            cpu_ms = s["cpu_s"] * 1000 / call_s if call_s else float("nan")
            per_call = (s["pss_mb"] - pss1) / (n - 1) if n > 1 else float("nan")
            for clock in CLOCKS:
                if all(_ok(by_n[m], single[clock], clock) for m in steps if m <= n):
                    best[clock] = n
            joins = s.get("agent_join_s", [])
            inbound = s.get("inbound", {})
            results.add(
                section,
                f"{ex} {n:>2} calls: overhead p95 / gaps, as the client took the frames and on the playout clock;"
                " unanswered / failed",
                f"{_overhead_p95(s, 'arrival'):.0f} ms / {s.get('gaps', 0)};"
                f" {_overhead_p95(s, 'playout'):.0f} ms / {s.get('playout_gaps', 0)}; {missed} / {len(failed)}"
                + (f" ({failed[0][:80]})" if failed else "")
                + f" ({s.get('gaps_in_client_stalls', 0)} of the arrival gaps span a stall of this client's loop)"
                + f"; at the product's audio sources {s.get('source_holes', 0)} holes"
                f" in {s.get('source_reports', 0)} calls (a call without holes logs at INFO, below the bench's level)"
                + f"; WebRTC concealed {inbound.get('concealed_samples', 0) / 48:.0f} ms in"
                f" {inbound.get('concealment_events', 0):.0f} events"
                f" ({inbound.get('silent_concealed_samples', 0) / 48:.0f} ms of it silent), packets lost"
                f" {inbound.get('packets_lost', 0):.0f}"
                + f"; the client's own loop stalled over {CLIENT_STALL_S * 1000:.0f} ms"
                f" {s.get('client_stalls', 0)} times (longest {s.get('client_lag_max_ms', 0.0):.0f} ms)"
                + f"; the caller's audio ran dry {s.get('caller_starves', 0)} times as it spoke, and the STT heard"
                f" {s.get('utterances', 0)} utterances in {s.get('turns_sent', 0)} turns",
                "<= 2x single, 0 gaps (playout clock)" if n > 1 else "",
                _ok(s, single["playout"], "playout") if n > 1 else None,
            )
            results.add(
                section,
                f"{ex} {n:>2} calls: loop lateness p99 / CPU-ms per call-second / PSS (per added "
                f"call) / agent join p95",
                f"{s['loop']['lag_p99_ms']:.1f} ms / {cpu_ms:.0f} / {s['pss_mb']:.0f} MB"
                + (f" ({per_call:.0f} MB)" if n > 1 else "")
                + f" / {pct(joins, 0.95):.1f} s"
                + f"; other programs on core {PRODUCT_CORE}: {s['others_on_core']:.0%}",
            )
        results.add(
            section,
            f"{ex}: most calls on one core with p95 overhead <= 2x single, 0 gaps, 0 unanswered, every agent joined"
            f" within {JOIN_LIMIT_S:.0f} s; on the playout clock (single {single['playout']:.0f} ms) / as the client"
            f" took the frames (single {single['arrival']:.0f} ms)",
            f"{best['playout']} / {best['arrival']}",
            ">= 8 (playout clock)",
            best["playout"] >= 8,
        )
    names = list(raw)
    for other in names[1:]:
        common = [n for n in steps if raw[names[0]][n].get("call_seconds") and raw[other][n].get("call_seconds")]
        cpu = {ex: [raw[ex][n]["cpu_s"] * 1000 / sum(raw[ex][n]["call_seconds"]) for n in common] for ex in raw}
        results.add(
            section,
            f"{other} vs {names[0]}: CPU-ms per call-second, median over the steps",
            f"{median(cpu[other]):.0f} vs {median(cpu[names[0]]):.0f}",
        )


# the two clocks a reply's frames are timed on: when this client's loop took them, and when they were due to play
# (the playout clock: libwebrtc's 10 ms pulls, which this client's stalls do not move; tests/harness/client.py)
CLOCKS = ("playout", "arrival")
JOIN_LIMIT_S = 2.0


def _overhead_p95(s: dict[str, Any], clock: str) -> float:
    return (pct(s.get("playout_latencies" if clock == "playout" else "latencies", []), 0.95) - INJECTED) * 1000


def _ok(s: dict[str, Any], single: float, clock: str) -> bool:
    gaps = s.get("playout_gaps" if clock == "playout" else "gaps", 0)
    return (
        _overhead_p95(s, clock) <= 2 * single
        and gaps == 0
        and s.get("missed", 0) == 0
        and not s["failed"]
        and pct(s.get("agent_join_s", []), 0.95) <= JOIN_LIMIT_S
    )
