"""What a warm job process costs before its call: `voxarena serve` keeps `IDLE` job processes forked from LiveKit's
forkserver and prewarmed; each one's private memory (USS: what it does not share with the forkserver, so what one
more process adds) and proportional share (PSS) are read from /proc once they are all ready, for each VAD engine
(silero on onnxruntime, one session per process, or LiveKit's native engine, one model in the forkserver), and the
lean settings of section 6 (100 ms input frames, no AGC). Then one call of `TURNS` turns: the private memory of the
process serving it, read mid-call, is what the call itself added (its room and WebRTC peer, the FFI runtime's
buffers, the providers' sockets, the session).

This is the floor under the cores section's "memory per added call": every added call takes one such process first.
Memory, unlike time, does not depend on what else the machine runs."""

from __future__ import annotations

import asyncio
import contextlib
import os
import time

from tests.harness.product import job_process_pids

from .common import Results, median
from .cores import LEAN
from .stack import bench_product, create_agent, servers
from .voice import SCRIPT, VOICE_ENV, _call

IDLE = 4
VARIANTS = {
    "onnx VAD": {"VOXARENA_VAD_ENGINE": "onnx"},
    "native VAD": {"VOXARENA_VAD_ENGINE": "native"},
    "lean": LEAN,
    "native VAD, MALLOC_ARENA_MAX=2": {"VOXARENA_VAD_ENGINE": "native", "MALLOC_ARENA_MAX": "2"},
}
READY_TIMEOUT_S = 120.0
TURNS = 12


def _rollup(pid: int) -> tuple[float, float]:
    """(USS, PSS) of one process in MB."""
    uss = pss = 0
    with open(f"/proc/{pid}/smaps_rollup") as f:
        for line in f:
            key, *rest = line.split()
            if key in ("Private_Clean:", "Private_Dirty:"):
                uss += int(rest[0])
            elif key == "Pss:":
                pss += int(rest[0])
    return uss / 1024, pss / 1024


async def _settled(product) -> dict[int, tuple[float, float]]:
    """The idle job processes once there are IDLE of them and none grew by 0.5 MB over a second (prewarmed)."""
    deadline = time.monotonic() + READY_TIMEOUT_S
    last: dict[int, tuple[float, float]] = {}
    while time.monotonic() < deadline:
        now: dict[int, tuple[float, float]] = {}
        for pid in job_process_pids(product):
            try:
                now[pid] = _rollup(pid)
            except OSError:
                continue
        if len(now) >= IDLE and now.keys() == last.keys() and all(now[p][0] - last[p][0] < 0.5 for p in now):
            return now
        last = now
        await asyncio.sleep(1.0)
    raise RuntimeError(f"{IDLE} idle job processes did not settle in {READY_TIMEOUT_S:.0f}s: {last}")


async def _in_call(product, idle: dict[int, tuple[float, float]]) -> tuple[float, float]:
    """(the highest USS of the process serving a call, sampled every half second while it runs, its USS when idle
    before): the serving process is the one that grew most."""
    agent_id = await create_agent(product, "memory")
    out: dict = {}
    call = asyncio.create_task(_call(product, agent_id, "bench", TURNS, out))
    peak: dict[int, float] = {}
    while not call.done():
        for pid in job_process_pids(product):
            with contextlib.suppress(OSError):
                peak[pid] = max(peak.get(pid, 0.0), _rollup(pid)[0])
        await asyncio.wait({call}, timeout=0.5)
    call.result()
    if out.get("missed"):
        raise RuntimeError(f"the call missed {out['missed']} of {TURNS} turns")
    serving = max((p for p in peak if p in idle), key=lambda p: peak[p] - idle[p][0])
    return peak[serving], idle[serving][0]


async def run(results: Results, *, quick: bool = False) -> None:
    section = "job processes"
    only = [v for v in os.environ.get("VOXARENA_BENCH_JOBMEM_VARIANTS", "").split(";") if v]
    raw = results.raw.setdefault("job_memory", {})
    with servers("job-memory", SCRIPT) as (work, server, fakes):
        for name, env in VARIANTS.items():
            if only and name not in only:
                continue
            product = bench_product(
                work / name.replace(" ", "-"),
                server,
                fakes,
                {**VOICE_ENV, **env, "VOXARENA_NUM_IDLE_PROCESSES": str(IDLE)},
            )
            try:
                procs = await _settled(product)
                in_call, idle_before = await _in_call(product, procs)
            finally:
                product.stop()
            uss = [u for u, _ in procs.values()]
            pss = [p for _, p in procs.values()]
            raw[name] = {"uss_mb": uss, "pss_mb": pss, "in_call_uss_mb": in_call}
            results.add(
                section,
                f"warm idle job process, {name}: private (USS) / proportional (PSS)",
                f"{median(uss):.1f} / {median(pss):.1f} MB (median of {len(uss)}; USS {min(uss):.1f}-{max(uss):.1f})",
            )
            results.add(
                section,
                f"the job process serving a call, {name}: private (USS) mid-call / what the call added",
                f"{in_call:.1f} MB / +{in_call - idle_before:.1f} MB",
            )
