"""The provider fakes as their own process (`python -m tests.fakes`), steered and read over HTTP, so that module- or
session-scoped e2e fixtures do not depend on any one test's event loop."""

from __future__ import annotations

import contextlib
import json
import sys
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .procs import ManagedProcess

ROOT = Path(__file__).resolve().parents[2]


@dataclass
class FakesProcess:
    urls: dict[str, str]
    api_key: str
    process: ManagedProcess

    def _call(self, method: str, path: str, body: Any = None) -> Any:
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(
            self.urls["base_url"] + path, data=data, method=method, headers={"Content-Type": "application/json"}
        )
        with urllib.request.urlopen(req, timeout=5) as r:
            return json.loads(r.read() or b"null")

    def counters(self) -> dict[str, dict[str, float]]:
        return self._call("GET", "/_fake/counters")

    def script(self, **fields: Any) -> None:
        self._call("POST", "/_fake/script", fields)

    @contextlib.contextmanager
    def failing(self, **failures: Any) -> Iterator[None]:
        """The named providers fail as scripted inside the block, and are healthy again after it."""
        self.script(failures=failures)
        try:
            yield
        finally:
            self.script(failures={})

    def log(self, provider: str) -> list[dict[str, Any]]:
        """The fake's recent requests for one provider (what it was asked to synthesise, which model, ...)."""
        return self._call("GET", f"/_fake/log?provider={provider}")[provider]

    def wait_idle(self, *, quiet_s: float = 1.5, timeout: float = 60.0) -> dict[str, dict[str, float]]:
        """Wait until no provider counter has moved for `quiet_s` (every call, analysis included, is done)."""
        import time

        deadline = time.monotonic() + timeout
        last, since = self.counters(), time.monotonic()
        while time.monotonic() - since < quiet_s:
            if time.monotonic() > deadline:
                raise TimeoutError(f"provider fakes still busy after {timeout}s: {last}")
            time.sleep(0.1)
            now = self.counters()
            if now != last:
                last, since = now, time.monotonic()
        return last

    def reset(self) -> None:
        self._call("POST", "/_fake/reset", {})

    def log_tail(self) -> str:
        return self.process.tail(60)

    def stop(self) -> None:
        self.process.stop()


def start_fakes(
    workdir: Path, *, script: dict[str, Any], api_key: str = "fake-key", timeout: float = 20
) -> FakesProcess:
    workdir.mkdir(parents=True, exist_ok=True)
    script_path = workdir / "script.json"
    script_path.write_text(json.dumps(script))
    port_file = workdir / "port"
    port_file.unlink(missing_ok=True)
    proc = ManagedProcess(
        "fakes",
        [
            sys.executable,
            "-m",
            "tests.fakes",
            "--port",
            "0",
            "--script",
            str(script_path),
            "--api-key",
            api_key,
            "--port-file",
            str(port_file),
        ],
        workdir / "fakes.log",
        cwd=ROOT,
    )
    proc.wait_until(
        lambda: port_file.exists() and port_file.read_text().strip() != "", timeout=timeout, what="listening"
    )
    # the fakes' own list: it has the Google TTS server's port and files too
    base = f"http://127.0.0.1:{int(port_file.read_text())}"
    with urllib.request.urlopen(f"{base}/_fake/urls", timeout=10) as r:
        urls = json.loads(r.read())
    return FakesProcess(urls=urls, api_key=api_key, process=proc)
