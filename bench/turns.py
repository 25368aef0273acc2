"""Every turn answered: 1,000 turns through the product with its default turn settings, four calls at a time.

A turn is unanswered when no agent audio arrives within 5 s of the caller's last loud frame; with
`VOXARENA_LOG_LEVEL=DEBUG` the product's `voxarena.turns` trace shows what became of each reply."""

from __future__ import annotations

import asyncio
import os
from typing import Any

from .common import Results, pct
from .stack import create_agent, product_stack
from .voice import SCRIPT, _call

PER_CALL = 50
AT_ONCE = 4


async def run(results: Results, *, quick: bool = False) -> None:
    total = 100 if quick else int(os.environ.get("VOXARENA_BENCH_TURNS", "1000"))
    total_off = 100 if quick else int(os.environ.get("VOXARENA_BENCH_TURNS_OFF", str(total)))
    section = "1b every turn answered"
    await _run(results, section, "default (preemptive generation on)", {}, total)
    await _run(results, section, "preemptive generation off", {"VOXARENA_PREEMPTIVE_GENERATION": "0"}, total_off)


async def _run(results: Results, section: str, label: str, env: dict[str, str], total: int) -> None:
    with product_stack(f"turns-{len(results.raw)}", SCRIPT, {"VOXARENA_MAX_CONCURRENT_CALLS": "64", **env}) as (
        product,
        _,
        fakes,
    ):
        agent_id = await create_agent(product, "turns")
        out: dict[str, Any] = {}
        gate = asyncio.Semaphore(AT_ONCE)

        async def one() -> None:
            async with gate:
                await _call(product, agent_id, "bench", PER_CALL, out)

        failed = [
            r
            for r in await asyncio.gather(*(one() for _ in range(total // PER_CALL)), return_exceptions=True)
            if isinstance(r, BaseException)
        ]
        counters = await asyncio.to_thread(fakes.wait_idle, quiet_s=1.5, timeout=60)
    latencies, missed = out.get("latencies", []), out.get("missed", 0)
    gemini = counters.get("gemini", {})
    text_requests = gemini.get("requests", 0) - gemini.get("json_requests", 0)  # the analyses are JSON requests
    turns = len(latencies) + missed
    results.raw[f"turns {label}"] = {"latencies": latencies, "missed": missed, "failed": [str(f) for f in failed]}
    results.add(
        section,
        f"{label}: turns",
        f"{turns} in {total // PER_CALL} calls of {PER_CALL}, {AT_ONCE} "
        f"at a time, default turn settings; client-measured voice-to-voice p50 / p95 "
        f"{pct(latencies, 0.5) * 1000:.0f} / {pct(latencies, 0.95) * 1000:.0f} ms; "
        f"LLM requests per turn {text_requests / turns if turns else float('nan'):.2f}",
    )
    results.add(
        section,
        f"{label}: unanswered turns (no reply within 5 s)",
        f"{missed}",
        f"0 in >= {total:,}",
        missed == 0 and turns >= total and not failed,
    )
    if failed:
        results.add(section, f"{label}: calls that failed", f"{len(failed)}: {failed[0]}", "0", False)
