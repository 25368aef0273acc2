"""What a warm job process costs before its call: `voxarena serve` keeps `IDLE` job processes forked from LiveKit's
forkserver and prewarmed; each one's private memory (USS: what it does not share with the forkserver, so what one
more process adds) and proportional share (PSS) are read from /proc once they are all ready, for each VAD engine
(silero on onnxruntime, one session per process, or LiveKit's native engine, one model in the forkserver).

This is the floor under the cores section's "memory per added call": every added call takes one such process first
(the call's own buffers, sockets and session come on top). Memory, unlike time, does not depend on what else the
machine runs."""

from __future__ import annotations

import asyncio
import time

from tests.harness.product import job_process_pids

from .common import Results, median
from .stack import bench_product, servers
from .voice import SCRIPT, VOICE_ENV

IDLE = 4
VARIANTS = {"onnx VAD": {"VOXARENA_VAD_ENGINE": "onnx"}, "native VAD": {"VOXARENA_VAD_ENGINE": "native"}}
READY_TIMEOUT_S = 120.0


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


async def run(results: Results, *, quick: bool = False) -> None:
    section = "job processes"
    raw = results.raw.setdefault("job_memory", {})
    with servers("job-memory", SCRIPT) as (work, server, fakes):
        for name, env in VARIANTS.items():
            product = bench_product(
                work / name.replace(" ", "-"),
                server,
                fakes,
                {**VOICE_ENV, **env, "VOXARENA_NUM_IDLE_PROCESSES": str(IDLE)},
            )
            try:
                procs = await _settled(product)
            finally:
                product.stop()
            uss = [u for u, _ in procs.values()]
            pss = [p for _, p in procs.values()]
            raw[name] = {"uss_mb": uss, "pss_mb": pss}
            results.add(
                section,
                f"warm idle job process, {name}: private (USS) / proportional (PSS)",
                f"{median(uss):.1f} / {median(pss):.1f} MB (median of {len(uss)}; USS {min(uss):.1f}-{max(uss):.1f})",
            )
