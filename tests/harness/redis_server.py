"""A real redis-server on loopback for the tests: no persistence, its own port, always stopped."""

from __future__ import annotations

import shutil
import socket
from dataclasses import dataclass
from pathlib import Path

from .procs import HarnessError, ManagedProcess, free_port


@dataclass
class RedisServer:
    url: str
    port: int
    process: ManagedProcess

    def stop(self) -> int | None:
        return self.process.stop()


def _answers_ping(port: int) -> bool:
    with socket.create_connection(("127.0.0.1", port), timeout=1) as s:
        s.sendall(b"PING\r\n")
        return s.recv(16).startswith(b"+PONG")


def start_redis(workdir: Path, *, ready_timeout: float = 20.0) -> RedisServer:
    binary = shutil.which("redis-server")
    if binary is None:
        raise HarnessError("redis-server is not installed (make test installs it through .ci/install-system.sh)")
    workdir.mkdir(parents=True, exist_ok=True)
    port = free_port("127.0.0.1")
    argv = [
        binary,
        "--bind",
        "127.0.0.1",
        "--port",
        str(port),
        "--save",
        "",
        "--appendonly",
        "no",
        "--dir",
        str(workdir),
        "--protected-mode",
        "yes",
    ]
    proc = ManagedProcess("redis-server", argv, workdir / "redis.log")
    try:
        proc.wait_until(lambda: _answers_ping(port), timeout=ready_timeout, what="answering PING")
    except BaseException:
        proc.stop()
        raise
    return RedisServer(url=f"redis://127.0.0.1:{port}/0", port=port, process=proc)
