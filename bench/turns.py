"""Every turn answered: 1,000 turns through the product with its default turn settings, four calls at a time.

A turn is unanswered when no agent audio arrives within 5 s of the caller's last loud frame; with
`VOXARENA_LOG_LEVEL=DEBUG` the product's `voxarena.turns` trace shows what became of each reply."""

from __future__ import annotations

import asyncio
from typing import Any

from .common import Results, pct
from .stack import create_agent, product_stack
from .voice import SCRIPT, _call

PER_CALL = 50
AT_ONCE = 4


async def run(results: Results, *, quick: bool = False) -> None:
    total = 100 if quick else 1000
    with product_stack("turns", SCRIPT, {"VOXARENA_MAX_CONCURRENT_CALLS": "64"}) as (product, _, _):
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
    latencies, missed = out.get("latencies", []), out.get("missed", 0)
    results.raw["turns"] = {"latencies": latencies, "missed": missed, "failed": [str(f) for f in failed]}
    section = "1b every turn answered"
    results.add(
        section,
        "turns",
        f"{len(latencies) + missed} in {total // PER_CALL} calls of {PER_CALL}, {AT_ONCE} "
        f"at a time, default turn settings; client-measured voice-to-voice p50 / p95 "
        f"{pct(latencies, 0.5) * 1000:.0f} / {pct(latencies, 0.95) * 1000:.0f} ms",
    )
    results.add(
        section,
        "unanswered turns (no reply within 5 s)",
        f"{missed}",
        "0 in >= 1,000",
        missed == 0 and len(latencies) + missed >= total and not failed,
    )
    if failed:
        results.add(section, "calls that failed", f"{len(failed)}: {failed[0]}", "0", False)
