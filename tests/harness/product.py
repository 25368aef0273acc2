"""`voxarena serve` as a real subprocess (one process: API + LiveKit worker + job processes), wired to a real
livekit-server and to the provider fakes through the product's own base-URL settings."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
import time
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp

from .livekit_server import LiveKitServer
from .procs import ManagedProcess


def product_env(
    *,
    data_dir: Path,
    port: int,
    livekit: LiveKitServer,
    fakes_urls: dict[str, str],
    api_key: str,
    extra: dict[str, str] | None = None,
    database_url: str = "",
) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("VOXARENA_", "LIVEKIT_", "GOOGLE_"))}
    env.update(
        {
            "VOXARENA_DATA_DIR": str(data_dir),
            "VOXARENA_HOST": "127.0.0.1",
            "VOXARENA_PORT": str(port),
            "VOXARENA_WORKER_PORT": "0",
            "VOXARENA_LOG_LEVEL": os.environ.get("VOXARENA_E2E_LOG_LEVEL", "INFO"),  # DEBUG: the turn trace too
            "VOXARENA_LIVEKIT_URL": livekit.url,
            "VOXARENA_LIVEKIT_API_KEY": livekit.api_key,
            "VOXARENA_LIVEKIT_API_SECRET": livekit.api_secret,
            "VOXARENA_DEEPGRAM_API_KEY": api_key,
            "VOXARENA_DEEPGRAM_BASE_URL": fakes_urls["deepgram_url"],
            "VOXARENA_ASSEMBLYAI_API_KEY": api_key,
            "VOXARENA_ASSEMBLYAI_BASE_URL": fakes_urls["assemblyai_url"],
            "VOXARENA_ELEVENLABS_API_KEY": api_key,
            "VOXARENA_ELEVENLABS_BASE_URL": fakes_urls["elevenlabs_base_url"],
            "VOXARENA_GOOGLE_API_KEY": api_key,
            "VOXARENA_GOOGLE_BASE_URL": fakes_urls["gemini_base_url"],
            "VOXARENA_OPENAI_API_KEY": api_key,
            "VOXARENA_OPENAI_BASE_URL": fakes_urls["openai_base_url"],
            "VOXARENA_RESEMBLE_API_KEY": api_key,
            "VOXARENA_RESEMBLE_BASE_URL": fakes_urls["resemble_base_url"],
            "VOXARENA_RESEMBLE_WEBSOCKET_URL": fakes_urls["resemble_ws_url"],
            "VOXARENA_RESEMBLE_VOICE_UUID": "fake-voice",
            "VOXARENA_DRAIN_TIMEOUT_SECONDS": "20",
            "PYTHONUNBUFFERED": "1",
        }
    )
    if database_url:  # the PostgreSQL pass of `make test`
        env["VOXARENA_DATABASE_URL"] = database_url
    env.update(extra or {})
    return env


@dataclass
class Product:
    base_url: str
    data_dir: Path
    process: ManagedProcess
    env: dict[str, str] = field(repr=False)
    # the tenant every request acts in (X-Tenant-ID); None: each user's personal tenant
    tenant: str | None = None
    # every web call this harness started (session id, user, tenant): what `wait_settled` waits for
    calls: list[tuple[str, str, str | None]] = field(default_factory=list, repr=False)

    def token(self, user: str) -> str:
        from api.auth import LocalIssuer

        return LocalIssuer(self.data_dir).issue(user)

    def headers(self, user: str) -> dict[str, str]:
        tenant = {"X-Tenant-ID": self.tenant} if self.tenant else {}
        return {"Authorization": f"Bearer {self.token(user)}", **tenant}

    async def request(self, method: str, path: str, user: str | None = "alice", **kw: Any) -> tuple[int, Any]:
        headers = self.headers(user) if user else {}
        async with (
            aiohttp.ClientSession() as http,
            http.request(method, self.base_url + path, headers=headers, **kw) as r,
        ):
            body = await r.json(content_type=None)
        if method == "POST" and path == "/api/livekit/token" and r.status == 200 and user:
            self.calls.append((body["sessionId"], user, self.tenant))
        return r.status, body

    async def wait_session(self, session_id: str, user: str, predicate, *, timeout: float, what: str) -> dict:
        deadline = time.monotonic() + timeout
        last: Any = None
        while time.monotonic() < deadline:
            status, last = await self.request("GET", f"/api/sessions/{session_id}", user)
            if status == 200 and predicate(last):
                return last
            await asyncio.sleep(0.25)
        raise AssertionError(
            f"session {session_id}: {what} not reached in {timeout}s; last: {last}\n"
            f"--- product log ---\n{self.process.tail(120)}"
        )

    async def wait_settled(self, *, timeout: float = 90.0) -> None:
        """Every call this harness started has ended and its analysis is done (completed, failed or skipped): none
        of them will ask a provider for anything more. A test that counts provider usage waits for this first, or an
        earlier test's call (its post-call analysis above all) lands in its counts."""
        deadline = time.monotonic() + timeout
        current = self.tenant
        try:
            for session_id, user, tenant in list(self.calls):
                self.tenant = tenant  # asked in the tenant the call was started in
                await self.wait_session(
                    session_id,
                    user,
                    lambda s: s["endedAt"] is not None and s["analysisStatus"] not in (None, "pending"),
                    timeout=max(deadline - time.monotonic(), 1.0),
                    what="ended with its analysis done (an earlier test's call still running)",
                )
        finally:
            self.tenant = current

    async def join(self, agent_id: str, user: str = "alice"):
        """A call: a token from POST /api/livekit/token, and a room client connected with it.
        Returns (AudioRoomClient, token response); the caller disconnects the client."""
        from .client import AudioRoomClient

        status, tok = await self.request("POST", "/api/livekit/token", user, json={"agentId": agent_id})
        assert status == 200, tok
        client = AudioRoomClient(tok["serverUrl"], tok["token"], identity=tok["identity"])
        await client.connect()
        return client, tok

    async def create_agent(self, user: str = "alice", **fields: Any) -> str:
        """An agent on the provider fakes (deepgram, gemini, elevenlabs) that speaks first; returns its id."""
        body = {
            "name": "Front desk",
            "systemPrompt": "You answer questions about opening hours.",
            "sttProvider": "deepgram",
            "llmProvider": "gemini",
            "ttsProvider": "elevenlabs",
            "firstMessageMode": "assistant_speaks_first",
            **fields,
        }
        status, agent = await self.request("POST", "/api/agents", user, json=body)
        assert status == 201, agent
        return agent["id"]

    def log_tail(self, lines: int = 150) -> str:
        return self.process.tail(lines)

    def stop(self, timeout: float = 40.0) -> int | None:
        """SIGTERM (drain, then stop), as a supervisor would; returns the exit code."""
        return self.process.stop(timeout=timeout)

    def restart(self, *, stop_timeout: float = 40.0, ready_timeout: float = 60.0) -> int | None:
        """A deploy: SIGTERM (the calls in flight drain), then `voxarena serve` again with the same environment
        (port, data dir), ready once its worker is registered; its log goes on in the same file. Returns the old
        process's exit code."""
        rc = self.stop(stop_timeout)
        fresh = start_product(
            workdir=self.process.log_path.parent,
            port=int(self.env["VOXARENA_PORT"]),
            env=self.env,
            ready_timeout=ready_timeout,
        )
        self.process = fresh.process
        return rc


def health(base_url: str) -> dict[str, Any] | None:
    try:
        with urllib.request.urlopen(base_url + "/health", timeout=2) as r:
            return json.loads(r.read())
    except Exception:
        return None


def start_product(
    *,
    workdir: Path,
    port: int,
    env: dict[str, str],
    ready_timeout: float = 60.0,
    worker: bool = True,
    argv_prefix: Sequence[str] = (),
) -> Product:
    """Start `voxarena serve`; ready when /health answers with the worker registered (or, for an API-only
    product, healthy). `argv_prefix` runs it through a wrapper that execs it (`taskset -c 0`: same pid)."""
    workdir.mkdir(parents=True, exist_ok=True)
    argv = [*argv_prefix, str(Path(sys.executable).with_name("voxarena")), "serve"]
    proc = ManagedProcess("voxarena", argv, workdir / "voxarena.log", env=env)
    base = f"http://127.0.0.1:{port}"
    product = Product(base_url=base, data_dir=Path(env["VOXARENA_DATA_DIR"]), process=proc, env=env)
    try:
        ready = (lambda h: h["livekit"]["status"] == "ok") if worker else (lambda h: h["status"] == "healthy")
        proc.wait_until(
            lambda: (h := health(base)) is not None and ready(h),
            timeout=ready_timeout,
            what="healthy" + (" with the worker registered" if worker else ""),
        )
    except BaseException:
        proc.stop()
        raise
    return product


__all__ = ["Product", "health", "product_env", "signal", "start_product"]


def _children(pid: int) -> list[int]:
    out = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        if ppid == pid:
            out.append(int(entry.name))
    return out


def job_process_pids(product: Product) -> list[int]:
    """The job processes (idle or running a call): the children of the worker's multiprocessing forkserver."""
    pids = []
    for child in _children(product.process.pid):
        try:
            cmdline = (Path("/proc") / str(child) / "cmdline").read_bytes()
        except OSError:
            continue
        if b"forkserver" in cmdline:
            pids += _children(child)
    return pids
