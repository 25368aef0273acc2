"""A real livekit-server (the cached binary built by `.ci/build-livekit.sh`) in --dev mode, inside the test netns."""

from __future__ import annotations

import os
import secrets
import socket
import tempfile
import urllib.request
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path

from .netns import require_test_netns
from .procs import HarnessError, ManagedProcess, distinct_free_ports

READY_TIMEOUT_S = 30.0


def bin_dir() -> Path:
    return Path(os.environ.get("VOXARENA_BIN_DIR", "~/.cache/voxarena/bin")).expanduser()


def require_binary(name: str, build_arg: str) -> Path:
    path = bin_dir() / name
    if not (path.is_file() and os.access(path, os.X_OK)):
        raise HarnessError(
            f"{name} not found at {path} (VOXARENA_BIN_DIR={os.environ.get('VOXARENA_BIN_DIR', '<unset>')}); "
            f"build it first with `.ci/build-livekit.sh {build_arg}`"
        )
    return path


def _http_ok(url: str) -> bool:
    with urllib.request.urlopen(url, timeout=2) as r:
        return r.status == 200


@dataclass
class LiveKitServer:
    """A running livekit-server. `url` is the ws:// URL for SDK clients, `http_url` for the server API."""

    ip: str
    port: int
    rtc_tcp_port: int
    rtc_udp_port: int
    api_key: str
    api_secret: str
    log_path: Path
    config_path: Path
    redis_address: str | None
    process: ManagedProcess = field(repr=False)

    @property
    def url(self) -> str:
        return f"ws://{self.ip}:{self.port}"

    @property
    def http_url(self) -> str:
        return f"http://{self.ip}:{self.port}"

    def token(
        self,
        identity: str,
        room: str,
        *,
        name: str | None = None,
        kind: str | None = None,
        ttl: timedelta = timedelta(minutes=30),
        **grants: bool,
    ) -> str:
        """A join token for `room`. Extra keyword grants (e.g. can_publish=False) go into VideoGrants."""
        from livekit import api

        flags: dict[str, bool] = {"can_publish": True, "can_subscribe": True, **grants}
        t = api.AccessToken(self.api_key, self.api_secret).with_identity(identity).with_ttl(ttl)
        t = t.with_grants(api.VideoGrants(room_join=True, room=room, **flags))  # type: ignore[arg-type]
        if name:
            t = t.with_name(name)
        if kind:
            t = t.with_kind(kind)  # type: ignore[arg-type]
        return t.to_jwt()

    def api(self):  # -> livekit.api.LiveKitAPI (use as `async with server.api() as lk:`)
        from livekit import api

        return api.LiveKitAPI(self.http_url, self.api_key, self.api_secret)

    def log_tail(self, lines: int = 80) -> str:
        return self.process.tail(lines)

    def stop(self) -> int | None:
        return self.process.stop()


def start_livekit_server(
    *,
    workdir: Path | None = None,
    redis_address: str | None = None,
    api_key: str | None = None,
    api_secret: str | None = None,
    webhook_urls: list[str] | None = None,
    ready_timeout: float = READY_TIMEOUT_S,
) -> LiveKitServer:
    """Start livekit-server --dev bound to the netns IP on free ports and wait until `GET /` says OK.

    Keys are generated unless given (dev mode accepts short secrets but we use 32 random bytes).
    `redis_address` ("ip:port") is needed for SIP: without Redis the server has no SIP store.
    """
    ip = require_test_netns()
    binary = require_binary("livekit-server", "server")
    workdir = Path(workdir or tempfile.mkdtemp(prefix="voxarena-lk-"))
    workdir.mkdir(parents=True, exist_ok=True)
    api_key = api_key or "vx" + secrets.token_hex(6)
    api_secret = api_secret or secrets.token_urlsafe(32)
    port, tcp_port, udp_port, stun_port = distinct_free_ports(
        ip, [socket.SOCK_STREAM, socket.SOCK_STREAM, socket.SOCK_DGRAM, socket.SOCK_DGRAM]
    )
    # JSON is valid YAML and avoids quoting issues with the generated secret.
    import json

    config = {
        "port": port,
        "keys": {api_key: api_secret},
        "rtc": {
            "tcp_port": tcp_port,
            "udp_port": udp_port,
            # pion's UDP mux opens no loopback socket without this; livekit-sip's pion client may use it.
            "enable_loopback_candidate": True,
            "use_external_ip": False,
            # Without stun_servers the server hands every client (and livekit-sip's pion client) Google's and
            # Twilio's public STUN servers in the join response, even with --node-ip. Point them at an unused
            # port on the netns IP instead: nothing answers, and host candidates are all we need.
            "stun_servers": [f"{ip}:{stun_port}"],
        },
        "logging": {"level": "debug"},
    }
    if webhook_urls:
        config["webhook"] = {"api_key": api_key, "urls": webhook_urls}
    config_path = workdir / "livekit.yaml"
    config_path.write_text(json.dumps(config, indent=2))
    log_path = workdir / "livekit-server.log"
    argv = [str(binary), "--dev", "--config", str(config_path), "--bind", ip, "--node-ip", ip]
    if redis_address:
        argv += ["--redis-host", redis_address]
    proc = ManagedProcess("livekit-server", argv, log_path)
    server = LiveKitServer(
        ip=ip,
        port=port,
        rtc_tcp_port=tcp_port,
        rtc_udp_port=udp_port,
        api_key=api_key,
        api_secret=api_secret,
        log_path=log_path,
        config_path=config_path,
        redis_address=redis_address,
        process=proc,
    )
    try:
        proc.wait_until(lambda: _http_ok(server.http_url + "/"), timeout=ready_timeout, what="ready (GET / == 200)")
    except BaseException:
        proc.stop()
        raise
    return server


__all__ = ["LiveKitServer", "bin_dir", "require_binary", "start_livekit_server"]
