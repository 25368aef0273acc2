"""Secrets stay in the Settings object: `voxarena serve` exports none of them to the environment its children
inherit, the embedded livekit-server gets only its own keys (in its environment, not on its command line), and
no secret setting shows in the log or in /health."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

from tests.harness.procs import ManagedProcess, free_port
from tests.harness.product import health

SECRETS = {
    "VOXARENA_DEEPGRAM_API_KEY": "dg-secret-3f9a1c",
    "VOXARENA_ASSEMBLYAI_API_KEY": "aai-secret-77b2e0",
    "VOXARENA_ELEVENLABS_API_KEY": "el-secret-c41d09",
    "VOXARENA_GOOGLE_API_KEY": "goog-secret-5e8f21",
    "VOXARENA_OPENAI_API_KEY": "oai-secret-a0b7c3",
    "VOXARENA_RESEMBLE_API_KEY": "rsm-secret-19cd44",
}


def _children(pid: int) -> list[int]:
    out = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                out.append(int(entry.name))
    return out


def _descendants(pid: int) -> list[int]:
    found, todo = [], [pid]
    while todo:
        for child in _children(todo.pop()):
            found.append(child)
            todo.append(child)
    return found


def _read(pid: int, name: str) -> bytes:
    try:
        return (Path("/proc") / str(pid) / name).read_bytes()
    except OSError:
        return b""


def test_no_secret_reaches_a_child_process_the_log_or_health(tmp_path: Path) -> None:
    port = free_port("127.0.0.1")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("VOXARENA_", "LIVEKIT_"))}
    env.update(
        {
            "VOXARENA_DATA_DIR": str(tmp_path / "data"),
            "VOXARENA_PORT": str(port),
            "VOXARENA_WORKER_PORT": "0",
            "VOXARENA_NUM_IDLE_PROCESSES": "1",
            **SECRETS,
        }
    )
    proc = ManagedProcess(
        "voxarena", [str(Path(sys.executable).with_name("voxarena")), "serve"], tmp_path / "serve.log", env=env
    )
    base = f"http://127.0.0.1:{port}"
    try:
        proc.wait_until(
            lambda: (h := health(base)) is not None and h["livekit"]["status"] == "ok",
            timeout=90,
            what="healthy with the embedded LiveKit and the worker registered",
        )
        keys = json.loads((tmp_path / "data" / "livekit-dev-keys.json").read_text())

        def kids() -> dict[int, bytes]:
            return {pid: _read(pid, "cmdline") for pid in _descendants(proc.pid)}

        # the embedded server, and the job processes (children of the multiprocessing forkserver) once warm
        proc.wait_until(
            lambda: (
                any(b"livekit-server" in c for c in kids().values())
                and any(b"forkserver" in c for c in kids().values())
            ),
            timeout=60,
            what="livekit-server and the job process forkserver running",
        )
        children = kids()
        livekit = [pid for pid, cmd in children.items() if b"livekit-server" in cmd]
        assert len(livekit) == 1, children
        lk_env = dict(item.split(b"=", 1) for item in _read(livekit[0], "environ").split(b"\0") if b"=" in item)
        assert lk_env.get(b"LIVEKIT_KEYS") == f"{keys['api_key']}: {keys['api_secret']}".encode()
        assert not [k for k in lk_env if k.startswith(b"VOXARENA_")], sorted(lk_env)
        assert keys["api_secret"].encode() not in children[livekit[0]], "the LiveKit secret is on the command line"
        for pid, cmd in children.items():
            environ = _read(pid, "environ")
            for name, secret in SECRETS.items():
                assert secret.encode() not in environ, f"{name} leaked into child {pid} ({cmd[:80]!r})"
                assert secret.encode() not in cmd, f"{name} on the command line of child {pid}"
        body = json.dumps(health(base))
        log = proc.tail(100_000)
        for name, secret in SECRETS.items():
            assert secret not in body, f"{name} in /health"
            assert secret not in log, f"{name} in the log"
        assert keys["api_secret"] not in log and keys["api_secret"] not in body
    finally:
        rc = proc.stop(timeout=40)
    assert rc == 0, proc.tail()
