"""API throughput: GET /api/agents and GET /api/costs/summary requests/s against a bare aiohttp hello-world, each
served by its own process on loopback, loaded by wrk (bounded: fixed connections and duration), alternating rounds."""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from decimal import Decimal
from pathlib import Path

from api.auth import LocalIssuer
from api.schemas.agents import storage
from core.store import agents as agents_repo
from core.store import usage as ledger
from core.store.db import Store
from core.store.tenants import personal_tenant_id
from pipelines.metering import make_event
from pipelines.pricing import PriceBook

from .common import Results, median

HERE = Path(__file__).resolve().parent

BENCH = personal_tenant_id("bench")  # the personal tenant of the user the bench signs in as


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait(url: str, timeout: float = 30) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            urllib.request.urlopen(url, timeout=1).read()
            return
        except Exception:
            time.sleep(0.2)
    raise RuntimeError(f"{url} not up")


def _wrk(url: str, headers: dict[str, str], seconds: int, connections: int) -> float:
    cmd = ["wrk", "-t1", f"-c{connections}", f"-d{seconds}s", "--latency"]
    for k, v in headers.items():
        cmd += ["-H", f"{k}: {v}"]
    out = subprocess.run([*cmd, url], capture_output=True, text=True, timeout=seconds + 30).stdout
    m = re.search(r"Requests/sec:\s+([\d.]+)", out)
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    if not m or non2xx:
        raise RuntimeError(f"wrk failed or saw errors:\n{out}")
    return float(m.group(1))


def _seed(data: Path) -> str:
    seed_store(data / "voxarena.db")
    return LocalIssuer(data).issue("bench", ttl_seconds=3600)


def seed_store(target: Path | str) -> None:
    """The section's data on one store (a SQLite file or a PostgreSQL URL): 20 agents and 5,000 ledger events of
    the bench user."""
    store = Store(target)
    book = PriceBook.load()
    for i in range(20):
        store.write_sync(
            agents_repo.create,
            BENCH,
            storage(
                {
                    "name": f"agent {i}",
                    "systemPrompt": "Be brief." * 20,
                    "sttProvider": "deepgram",
                    "llmProvider": "gemini",
                    "ttsProvider": "elevenlabs",
                }
            ),
        )
    events = [
        make_event(
            book,
            key=f"k{i}",
            owner_id=BENCH,
            session_id=None,
            agent_id=None,
            provider="deepgram",
            model=None,
            event_type="stt_minutes",
            quantity=Decimal("0.5"),
        ).as_dict()
        for i in range(5000)
    ]
    store.write_sync(ledger.record_events, events)
    store.close()


def run(results: Results, *, seconds: int = 8, rounds: int = 3, connections: int = 32) -> None:
    if not shutil.which("wrk"):
        raise RuntimeError("wrk is not installed (make bench installs it through .ci/install-system.sh)")
    with tempfile.TemporaryDirectory(prefix="vx-bench-api-") as d:
        data = Path(d)
        token = _seed(data)
        api_port, hello_port = _port(), _port()
        env = {
            **os.environ,
            "VOXARENA_DATA_DIR": str(data),
            "VOXARENA_PORT": str(api_port),
            "VOXARENA_LOG_LEVEL": "WARNING",
            "VOXARENA_RATE_LIMIT_RPS": "1000000000",
        }  # measured, never refused
        api = subprocess.Popen(
            [str(Path(sys.executable).with_name("voxarena")), "serve", "--no-worker"],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        hello = subprocess.Popen(
            [sys.executable, str(HERE / "hello.py"), str(hello_port)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            _wait(f"http://127.0.0.1:{api_port}/health")
            _wait(f"http://127.0.0.1:{hello_port}/")
            auth = {"Authorization": f"Bearer {token}"}
            targets = {
                "hello": (f"http://127.0.0.1:{hello_port}/", {}),
                "agents": (f"http://127.0.0.1:{api_port}/api/agents", auth),
                "summary": (f"http://127.0.0.1:{api_port}/api/costs/summary", auth),
            }
            for url, headers in targets.values():  # warm up
                _wrk(url, headers, 2, connections)
            rates: dict[str, list[float]] = {k: [] for k in targets}
            for _ in range(rounds):
                for name, (url, headers) in targets.items():
                    rates[name].append(_wrk(url, headers, seconds, connections))
        finally:
            for p in (api, hello):
                p.terminate()
                p.wait(timeout=20)
    results.raw["api_throughput"] = rates
    hello_rps = median(rates["hello"])
    for name, target in (("agents", 0.5), ("summary", 0.2)):
        rps = median(rates[name])
        path = "/api/agents" if name == "agents" else "/api/costs/summary"
        results.add(
            "5 API throughput",
            f"GET {path}",
            f"{rps:,.0f} req/s = {rps / hello_rps:.2f}x hello-world",
            f">= {target}x",
            rps / hello_rps >= target,
        )
    results.add("5 API throughput", "bare aiohttp hello-world", f"{hello_rps:,.0f} req/s")
