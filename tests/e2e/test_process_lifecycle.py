"""`voxarena serve` as a process: keeps serving when LiveKit is down, drains on SIGTERM, exits non-zero on a
fatal worker failure."""

from __future__ import annotations

import json
import sys
import urllib.request
from pathlib import Path

from tests.harness.procs import ManagedProcess, free_port
from tests.harness.product import health


def _serve(tmp_path: Path, **env: str) -> tuple[ManagedProcess, str]:
    import os

    port = free_port("127.0.0.1")
    full = {k: v for k, v in os.environ.items() if not k.startswith("VOXARENA_")}
    full.update(
        {"VOXARENA_DATA_DIR": str(tmp_path / "data"), "VOXARENA_PORT": str(port), "VOXARENA_WORKER_PORT": "0", **env}
    )
    proc = ManagedProcess(
        "voxarena", [str(Path(sys.executable).with_name("voxarena")), "serve"], tmp_path / "serve.log", env=full
    )
    return proc, f"http://127.0.0.1:{port}"


def test_with_livekit_unreachable_the_api_serves_health_says_so_and_sigterm_exits_0(tmp_path):
    dead = free_port("127.0.0.1")
    proc, base = _serve(
        tmp_path,
        VOXARENA_LIVEKIT_URL=f"ws://127.0.0.1:{dead}",
        VOXARENA_LIVEKIT_API_KEY="k",
        VOXARENA_LIVEKIT_API_SECRET="s" * 32,
    )
    try:
        proc.wait_until(lambda: health(base) is not None, timeout=30, what="serving /health")
        h = health(base)
        assert h["status"] == "degraded" and h["livekit"]["status"] == "unreachable", h
        from api.auth import LocalIssuer

        token = LocalIssuer(tmp_path / "data").issue("alice")
        req = urllib.request.Request(base + "/api/agents", headers={"Authorization": f"Bearer {token}"})
        with urllib.request.urlopen(req, timeout=5) as r:
            assert json.loads(r.read()) == {"agents": [], "total": 0}
        # the worker keeps retrying, and the process stays up meanwhile
        proc.wait_until(
            lambda: "failed to connect to livekit, retrying" in proc.tail(400),
            timeout=60,
            what="the worker retrying its LiveKit connection",
        )
        assert proc.alive(), proc.tail()
    finally:
        rc = proc.stop(timeout=30)
    assert rc == 0, proc.tail()


def test_a_fatal_worker_failure_exits_non_zero(tmp_path):
    # A LiveKit URL without credentials cannot register at all: that is fatal, not a connection retry.
    proc, _base = _serve(
        tmp_path, VOXARENA_LIVEKIT_URL="ws://127.0.0.1:9", VOXARENA_LIVEKIT_API_KEY="", VOXARENA_LIVEKIT_API_SECRET=""
    )
    rc = proc.wait_exit(timeout=30)
    proc.stop()
    assert rc not in (None, 0), proc.tail()
    assert "LiveKit worker stopped" in proc.tail(200)
