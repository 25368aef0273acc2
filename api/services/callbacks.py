"""Outbound-call callbacks: URLs checked when given and again when used, bodies signed Stripe-style, delivered from
the call-events outbox in order per call with exponential backoff. A failing receiver never touches the call.

Signed as core/signing.py says: the receiver recomputes ``X-Voxarena-Signature`` with the tenant's secret
(``GET /api/calls/callback-secret``) and rejects an old ``t``.
"""

from __future__ import annotations

import asyncio
import logging
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import aiohttp

from core.netpolicy import AddressRefused, NetPolicy
from core.periodic import Periodic
from core.secrets import SecretBox
from core.signing import SIGNATURE_HEADER, sign
from core.store import calls as repo
from core.store.db import Store
from core.store.timefmt import to_iso

from ..errors import BadRequest

log = logging.getLogger("voxarena.callbacks")

TIMEOUT_SECONDS = 10.0
# A claimed event waits this long past the attempt's timeout before another sender may try it.
CLAIM_MARGIN_SECONDS = 10.0


async def check_url(policy: NetPolicy, url: str) -> None:
    """When a callback URL is given: http(s), and a host the outbound address policy lets the product reach
    (core/netpolicy.py); a 400 naming the field otherwise."""
    try:
        await policy.check_url(url)
    except AddressRefused as e:
        raise BadRequest(f"body callback_url: {e}") from None


def _reason(e: BaseException) -> str:
    """What a failed attempt stores: the policy's refusal in its own words, else the client's error."""
    refused = e if isinstance(e, AddressRefused) else getattr(e, "os_error", None)
    if isinstance(refused, AddressRefused):
        return f"refused: {refused}"
    return str(e) or type(e).__name__


class CallbackSender:
    """Delivers due callback events through an HTTP session of the outbound address policy: each delivery resolves
    the receiver's name once and connects only to the addresses it checked (no DNS rebinding), follows no
    redirect, and a refused address is a failed attempt that says why."""

    def __init__(
        self,
        store: Store,
        policy: NetPolicy,
        *,
        box: SecretBox,
        max_attempts: int,
        backoff_seconds: float,
        interval_seconds: float = 0.5,
    ) -> None:
        self.store = store
        self.box = box
        self.policy = policy
        self.max_attempts = max_attempts
        self.backoff = backoff_seconds
        self._http: aiohttp.ClientSession | None = None
        self._periodic = Periodic("callback-sender", interval_seconds, self.deliver_due, log)

    def http(self) -> aiohttp.ClientSession:
        if self._http is None:  # made inside the running loop
            self._http = self.policy.session()
        return self._http

    def start(self) -> None:
        self._periodic.start()

    async def stop(self) -> None:
        await self._periodic.stop()
        if self._http is not None:
            await self._http.close()
            self._http = None

    async def deliver_due(self) -> int:
        # claimed, not only read: with several nodes on one store, each event goes out from one of them
        now = datetime.now(UTC)
        until = to_iso(now + timedelta(seconds=TIMEOUT_SECONDS + CLAIM_MARGIN_SECONDS))
        events = await self.store.write(repo.claim_due_events, to_iso(now), until)
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
            await self.policy.check_url(url, resolve=False)  # an address literal; a name is checked as it resolves
            async with self.http().post(
                url,
                data=body,
                timeout=aiohttp.ClientTimeout(total=TIMEOUT_SECONDS),
                allow_redirects=False,
                headers={
                    "Content-Type": "application/json",
                    SIGNATURE_HEADER: signature,
                    "X-Voxarena-Event-Id": event["event_id"],
                },
            ) as resp:
                status = resp.status
                if not 200 <= status < 300:
                    error = f"HTTP {status}"
        except (TimeoutError, aiohttp.ClientError, AddressRefused) as e:
            error = _reason(e)
        delivered = error is None
        retry_after = None
        if not delivered and attempt < self.max_attempts:
            delay = self.backoff * (2 ** (attempt - 1))
            retry_after = to_iso(datetime.now(UTC) + timedelta(seconds=delay))
        if not delivered:
            log.warning(
                "callback %s for call %s (%s) attempt %d failed: %s%s",
                event["event_id"],
                event["call_id"],
                event["status"],
                attempt,
                error,
                "; giving up" if retry_after is None else "",
            )
        await self.store.write(
            lambda db: repo.record_attempt(
                db,
                event,
                attempt=attempt,
                url=url,
                signature=signature,
                response_status=status,
                error=error,
                delivered=delivered,
                retry_after=retry_after,
            )
        )
        return delivered
