"""A local LiveKit dev server beside the product, for `voxarena serve` with no LiveKit settings.

It is the same pinned build the tests use (`.ci/build-livekit.sh`), bound to loopback, with keys generated per data
directory so nothing else on the machine can join its rooms."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import secrets
import shutil
import signal
from pathlib import Path

import aiohttp

log = logging.getLogger("voxarena.livekit")

DEFAULT_BIN = Path(os.environ.get("VOXARENA_BIN_DIR", Path.home() / ".cache" / "voxarena" / "bin")) / "livekit-server"


class LocalLiveKitError(RuntimeError):
    pass


class LocalLiveKit:
    def __init__(
        self, data_dir: Path, *, binary: str = "", port: int = 7880, host: str = "127.0.0.1", webhook_url: str = ""
    ) -> None:
        self.data_dir = data_dir
        self.webhook_url = webhook_url
        self.binary = Path(binary) if binary else DEFAULT_BIN
        self.port = port
        self.host = host
        self.proc: asyncio.subprocess.Process | None = None
        keys_path = data_dir / "livekit-dev-keys.json"
        if keys_path.exists():
            keys = json.loads(keys_path.read_text())
        else:
            keys = {"api_key": "vx" + secrets.token_hex(6), "api_secret": secrets.token_urlsafe(32)}
            data_dir.mkdir(parents=True, exist_ok=True)
            keys_path.write_text(json.dumps(keys))
            keys_path.chmod(0o600)
        self.api_key: str = keys["api_key"]
        self.api_secret: str = keys["api_secret"]

    @property
    def url(self) -> str:
        return f"ws://{self.host}:{self.port}"

    def child_env(self) -> dict[str, str]:
        """The server's whole environment: its own keys (in the environment, not on the command line where any
        process could read them) and the basics a Go binary needs. Nothing of ours leaks into it."""
        env = {k: os.environ[k] for k in ("PATH", "HOME", "LANG", "TZ", "TMPDIR") if k in os.environ}
        env["LIVEKIT_KEYS"] = f"{self.api_key}: {self.api_secret}"
        return env

    async def start(self, timeout: float = 30.0) -> None:
        if not self.binary.exists():
            found = shutil.which("livekit-server")
            if not found:
                raise LocalLiveKitError(
                    f"no livekit-server at {self.binary}: build it with .ci/build-livekit.sh (needs Go >= 1.26), "
                    "or set VOXARENA_LIVEKIT_URL, VOXARENA_LIVEKIT_API_KEY and VOXARENA_LIVEKIT_API_SECRET"
                )
            self.binary = Path(found)
        config = self.data_dir / "livekit-dev.yaml"
        cfg: dict = {
            # Loopback only: no public STUN servers handed to clients (the server would otherwise list Google's).
            "rtc": {"enable_loopback_candidate": True, "use_external_ip": False, "stun_servers": [f"{self.host}:3478"]},
        }
        if self.webhook_url:
            cfg["webhook"] = {"api_key": self.api_key, "urls": [self.webhook_url]}
        config.write_text(json.dumps(cfg))  # JSON is YAML
        log_path = self.data_dir / "livekit-dev.log"
        with log_path.open("ab") as logf:  # the child keeps its own descriptor
            self.proc = await asyncio.create_subprocess_exec(
                str(self.binary),
                "--dev",
                "--config",
                str(config),
                "--bind",
                self.host,
                "--node-ip",
                self.host,
                "--port",
                str(self.port),
                stdout=logf,
                stderr=logf,
                start_new_session=True,
                env=self.child_env(),
            )
        log.info("starting local livekit-server (pid %d, log %s)", self.proc.pid, log_path)
        deadline = asyncio.get_running_loop().time() + timeout
        async with aiohttp.ClientSession() as http:
            while True:
                if self.proc.returncode is not None:
                    raise LocalLiveKitError(f"livekit-server exited with {self.proc.returncode}; see {log_path}")
                try:
                    async with http.get(
                        f"http://{self.host}:{self.port}/", timeout=aiohttp.ClientTimeout(total=1)
                    ) as r:
                        if r.status == 200:
                            break
                except (TimeoutError, aiohttp.ClientError):
                    pass
                if asyncio.get_running_loop().time() > deadline:
                    await self.stop()
                    raise LocalLiveKitError(f"livekit-server not ready after {timeout:.0f}s; see {log_path}")
                await asyncio.sleep(0.2)
        log.info("local livekit-server ready at %s", self.url)

    async def stop(self) -> None:
        if self.proc is None or self.proc.returncode is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            await asyncio.wait_for(self.proc.wait(), 10)
        except TimeoutError:
            self.proc.kill()
            await self.proc.wait()
