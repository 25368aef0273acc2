"""Run the fakes as a standalone process (for worker job processes / end-to-end tests).

    python -m tests.fakes --port 0 --script script.json [--api-key K] [--port-file F]

Prints one JSON line `{"event": "ready", "port": P, "urls": {...}}` on stdout once listening
(and writes P to --port-file if given), then serves until SIGTERM/SIGINT. Steer it over HTTP:
GET /_fake/counters, POST /_fake/script, POST /_fake/reset.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import signal
import sys
from pathlib import Path

from .server import FakeProviders
from .state import FakeScript


def _parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m tests.fakes", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1", choices=["127.0.0.1", "localhost"])
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port")
    parser.add_argument("--script", type=Path, help="JSON file with FakeScript fields")
    parser.add_argument("--api-key", default="fake-key", help="the only key the fakes accept")
    parser.add_argument("--port-file", type=Path, help="write the bound port here when ready")
    parser.add_argument("--log-level", default="WARNING")
    return parser.parse_args(argv)


async def _serve(args: argparse.Namespace) -> None:
    script = FakeScript.from_dict(json.loads(args.script.read_text())) if args.script else FakeScript()
    fakes = FakeProviders(script, api_key=args.api_key, host=args.host, port=args.port)
    await fakes.start()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    if args.port_file:
        args.port_file.write_text(str(fakes.port))
    print(json.dumps({"event": "ready", "port": fakes.port, "urls": fakes.urls()}), flush=True)
    try:
        await stop.wait()
    finally:
        await fakes.stop()


def main(argv: list[str] | None = None) -> int:
    args = _parse_args(argv)
    logging.basicConfig(level=args.log_level, stream=sys.stderr)
    asyncio.run(_serve(args))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
