"""`python -m bench [--only eot,turns,voice,jobstart,cores,jobmem,ingest,costs,api,external,pg,noise,voicemail,llm,vad]
[--quick]`: every benchmark, one table.

Run it through `make bench` (inside the test network namespace, after installing what it needs)."""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from pathlib import Path

from .common import Results, machine

SECTIONS = (
    "eot",
    "turns",
    "voice",
    "jobstart",
    "cores",
    "jobmem",
    "ingest",
    "costs",
    "api",
    "external",
    "pg",
    "noise",
    "voicemail",
    "llm",
    "vad",
)


def main() -> int:
    parser = argparse.ArgumentParser(prog="bench")
    parser.add_argument("--only", default=",".join(SECTIONS))
    parser.add_argument("--quick", action="store_true", help="smaller sizes, for trying the harness")
    args = parser.parse_args()
    only = [s.strip() for s in args.only.split(",") if s.strip()]
    results = Results()
    started = time.time()
    print(f"machine: {machine()}", flush=True)
    if "eot" in only:
        from . import end_of_turn

        asyncio.run(end_of_turn.run(results, quick=args.quick))
    if "turns" in only:
        from . import turns

        asyncio.run(turns.run(results, quick=args.quick))
    if "voice" in only:
        from . import voice

        asyncio.run(voice.run(results, quick=args.quick))
    if "jobstart" in only:
        from . import job_start

        asyncio.run(job_start.run(results, quick=args.quick))
    if "cores" in only:
        from . import cores

        asyncio.run(cores.run(results, quick=args.quick))
    if "jobmem" in only:
        from . import job_memory

        asyncio.run(job_memory.run(results, quick=args.quick))
    if "ingest" in only:
        from . import ingest

        asyncio.run(ingest.run(results, events=20_000 if args.quick else 200_000))
    if "costs" in only:
        from . import cost_queries

        asyncio.run(
            cost_queries.run(
                results, sizes=(100_000,) if args.quick else (1_000_000, 10_000_000), requests=50 if args.quick else 200
            )
        )
    if "api" in only:
        from . import api_throughput

        api_throughput.run(results, seconds=3 if args.quick else 8, rounds=1 if args.quick else 3)
    if "external" in only:
        from . import external_costs

        asyncio.run(
            external_costs.run(
                results,
                events=20_000 if args.quick else 1_000_000,
                http_events=5_000 if args.quick else 50_000,
                requests=20 if args.quick else 200,
            )
        )
    if "pg" in only:
        from . import pg

        asyncio.run(pg.run(results, quick=args.quick))
    if "noise" in only:
        from . import noise

        asyncio.run(noise.run(results, quick=args.quick))
    if "voicemail" in only:
        from . import voicemail

        asyncio.run(voicemail.run(results, quick=args.quick))
    if "llm" in only:
        from . import llm_client

        asyncio.run(llm_client.run(results, quick=args.quick))
    if "vad" in only:
        from . import vad_inference

        asyncio.run(vad_inference.run(results, quick=args.quick))
    table = results.table()
    print(f"\nmachine: {machine()}; {time.time() - started:.0f}s\n\n{table}")
    out = Path(__file__).resolve().parent / "results"
    out.mkdir(exist_ok=True)
    (out / "latest.md").write_text(f"machine: {machine()}\n\n{table}\n")
    (out / "latest.json").write_text(
        json.dumps(
            {"machine": machine(), "rows": [r.__dict__ for r in results.rows], "raw": results.raw},
            indent=2,
            default=str,
        )
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
