"""What a job start does on its event loop: `CALLS` calls one at a time to a product whose job processes carry the
probe `bench/jobstart_site/sitecustomize.py` (through `PYTHONPATH`; the product itself never loads it). For each job
start (the token to the caller's first word), from the loop iterations whose callbacks ran longer than 5 ms: their
CPU time in all, the minor page faults they took (a process forked from the forkserver copies each page it first
writes, a reference count included), the longest iteration by CPU time and by wall time (wall beyond CPU is the
process waiting for a core) and how many carried over 20 ms of CPU, the loop's own share of the job-start target;
and the callbacks of the longest. `VOXARENA_BENCH_JOBSTART_PROFILE=1` adds a cProfile of each iteration to the raw
results (slowing what it measures)."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

from .common import Results, median
from .stack import bench_product, create_agent, servers
from .voice import BLOCK_WARN_MS, SCRIPT, VOICE_ENV, _call

CALLS = 5
TURNS = 3
SITE = Path(__file__).resolve().parent / "jobstart_site"


def _iterations(out_dir: Path) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = []
    for path in out_dir.glob("*.jsonl"):
        found.extend(json.loads(line) for line in path.read_text().splitlines())
    return sorted(found, key=lambda r: r["at"])


async def run(results: Results, *, quick: bool = False) -> None:
    calls = 2 if quick else CALLS
    with servers("jobstart", SCRIPT) as (work, server, fakes):
        out_dir = work / "iterations"
        shutil.rmtree(out_dir, ignore_errors=True)
        out_dir.mkdir()
        env = {
            **VOICE_ENV,
            "JOBSTART_OUT": str(out_dir),
            "JOBSTART_PROFILE": os.environ.get("VOXARENA_BENCH_JOBSTART_PROFILE", "0"),
            "PYTHONPATH": str(SITE),
        }
        product = bench_product(work / "product", server, fakes, env)
        try:
            agent_id = await create_agent(product, "bench")
            out: dict[str, Any] = {}
            for _ in range(calls):
                await _call(product, agent_id, "bench", TURNS, out)
        finally:
            product.stop()
    iterations = _iterations(out_dir)
    starts = [[r for r in iterations if a <= r["at"] <= b] for a, b in out.get("job_starts", [])]
    starts = [s for s in starts if s]
    if not starts:
        raise RuntimeError(f"the probe recorded no loop iteration at any of {calls} job starts (in {out_dir})")
    longest = max((r for s in starts for r in s), key=lambda r: r["cpu_ms"])
    results.raw["job_start"] = starts
    section = "1d job start"
    results.add(section, "job starts measured", f"{len(starts)} of {calls} calls ({TURNS} turns each)")
    cpu = [sum(r["cpu_ms"] for r in s) for s in starts]
    faults = median([sum(r["faults"] for r in s) for s in starts])
    results.add(
        section,
        "per job start, median (min-max): CPU in loop iterations over 5 ms / their minor page faults",
        f"{median(cpu):.0f} ms ({min(cpu):.0f}-{max(cpu):.0f}) / {faults:.0f}",
    )
    results.add(
        section,
        "per job start, median: longest iteration by CPU / by wall time",
        f"{median([max(r['cpu_ms'] for r in s) for s in starts]):.1f} / "
        f"{median([max(r['wall_ms'] for r in s) for s in starts]):.1f} ms",
    )
    over = sum(1 for s in starts for r in s if r["cpu_ms"] > BLOCK_WARN_MS)
    # the loop's own share of the target (no block over 20 ms): LiveKit's monitor (section 1) measures the heartbeat's
    # lateness, which also counts the process waiting for a core and two busy iterations in a row
    results.add(section, f"loop iterations with over {BLOCK_WARN_MS} ms of CPU at job start, in all", str(over))
    results.add(
        section,
        "the longest by CPU: wall / CPU / faults; its longest callbacks (ms)",
        f"{longest['wall_ms']} / {longest['cpu_ms']} ms / {longest['faults']}; "
        + ", ".join(f"{name} {ms}" for ms, name in longest["callbacks"][:4]),
    )
