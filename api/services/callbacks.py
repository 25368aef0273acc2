"""Outbound-call callbacks: URLs checked when given and again when used, bodies signed Stripe-style, delivered from
the call-events outbox in order per call with exponential backoff. A failing receiver never touches the call.

Signature header: ``X-Voxarena-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256(secret, "<t>.<body>")>``; the
receiver recomputes it with the tenant's secret (``GET /api/calls/callback-secret``) and rejects old ``t``.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import ipaddress
import logging
import socket
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

import aiohttp

from core.periodic import Periodic
from core.secrets import SecretBox
from core.store import calls as repo
from core.store.db import Store
from core.store.timefmt import now_iso, to_iso

from ..errors import BadRequest

log = logging.getLogger("voxarena.callbacks")

SIGNATURE_HEADER = "X-Voxarena-Signature"
TIMEOUT_SECONDS = 10.0


def sign(secret: str, body: bytes, t: int) -> str:
    digest = hmac.new(secret.encode(), f"{t}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={t},v1={digest}"


def _private(address: str) -> bool:
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    return (ip.is_private or ip.is_loopback or ip.is_link_local or ip.is_reserved or ip.is_multicast
            or ip.is_unspecified)


async def check_url(url: str, allowed_hosts: tuple[str, ...]) -> None:
    """http(s) only; a host resolving to a private, loopback or link-local address is refused unless listed in
    VOXARENA_CALLBACK_ALLOWED_HOSTS (so a callback cannot be aimed at the product's own network)."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise BadRequest("body callback_url: must be an http(s) URL with a host")
    host = parts.hostname
    if host in allowed_hosts:
        return
    try:
        infos = await asyncio.get_running_loop().getaddrinfo(host, parts.port or 443, type=socket.SOCK_STREAM)
    except socket.gaierror as e:
        raise BadRequest(f"body callback_url: host {host!r} does not resolve ({e.strerror})") from None
    if any(_private(info[4][0]) for info in infos):
        raise BadRequest(f"body callback_url: {host!r} is a private, loopback or link-local address "
                         "(list it in VOXARENA_CALLBACK_ALLOWED_HOSTS to allow it)")


class CallbackSender:
    def __init__(self, store: Store, http: Callable[[], aiohttp.ClientSession], *, box: SecretBox, max_attempts: int,
                 backoff_seconds: float, allowed_hosts: tuple[str, ...], interval_seconds: float = 0.5) -> None:
        self.store = store
        self.box = box
        self.http = http
        self.max_attempts = max_attempts
        self.backoff = backoff_seconds
        self.allowed_hosts = allowed_hosts
        self._periodic = Periodic("callback-sender", interval_seconds, self.deliver_due, log)

    def start(self) -> None:
        self._periodic.start()

    async def stop(self) -> None:
        await self._periodic.stop()

    async def deliver_due(self) -> int:
        events = await self.store.read(repo.due_events, now_iso())
        # calls are independent; within a call only its oldest event is due, so order holds
        results = await asyncio.gather(*(self._deliver(e) for e in events))
        return sum(results)

    async def _deliver(self, event: dict[str, Any]) -> bool:
        url = event["callback_url"]
        attempt = event["attempts"] + 1
        body = event["payload"].encode()
        secret = await self.store.write(repo.callback_secret, self.box, event["owner_id"])
        signature = sign(secret, body, int(time.time()))
        status: int | None = None
        error: str | None = None
        try:
            await check_url(url, self.allowed_hosts)  # again: DNS may point elsewhere now
            async with self.http().post(url, data=body, timeout=aiohttp.ClientTimeout(total=TIMEOUT_SECONDS),
                                        allow_redirects=False,
                                        headers={"Content-Type": "application/json", SIGNATURE_HEADER: signature,
                                                 "X-Voxarena-Event-Id": event["event_id"]}) as resp:
                status = resp.status
                if not 200 <= status < 300:
                    error = f"HTTP {status}"
        except (TimeoutError, aiohttp.ClientError, BadRequest) as e:
            error = getattr(e, "detail", None) or str(e) or type(e).__name__
        delivered = error is None
        retry_after = None
        if not delivered and attempt < self.max_attempts:
            delay = self.backoff * (2 ** (attempt - 1))
            retry_after = to_iso(datetime.now(UTC) + timedelta(seconds=delay))
        if not delivered:
            log.warning("callback %s for call %s (%s) attempt %d failed: %s%s", event["event_id"], event["call_id"],
                        event["status"], attempt, error, "; giving up" if retry_after is None else "")
        await self.store.write(lambda db: repo.record_attempt(
            db, event, attempt=attempt, url=url, signature=signature, response_status=status, error=error,
            delivered=delivered, retry_after=retry_after))
        return delivered
