"""Delivers the agents' post-call webhooks (core/webhooks.py) from their outbox (core/store/agent_webhooks.py):
each due event claimed (so one node sends it), its body made at the time of sending (the session as
``GET /api/sessions/{id}`` shows it, with its tool calls and analysis, and its cost), signed, POSTed through the
outbound address policy without following redirects, and its attempt recorded; a failure is retried with
exponential backoff up to ``callback_max_attempts``."""

from __future__ import annotations

import asyncio
import json
import logging
from datetime import UTC, datetime, timedelta
from typing import Any

import aiohttp

from core.netpolicy import AddressRefused, NetPolicy
from core.periodic import Periodic
from core.secrets import SecretBox
from core.store import agent_webhooks as repo
from core.store import calls as calls_repo
from core.store import sessions as sessions_repo
from core.store import usage as ledger
from core.store.db import Store
from core.store.timefmt import to_iso
from core.webhooks import post_signed

from ..schemas.sessions import session_wire

log = logging.getLogger("voxarena.webhooks")

TIMEOUT_SECONDS = 10.0
CLAIM_MARGIN_SECONDS = 10.0


def payload(db: Any, event: dict[str, Any]) -> bytes:
    """The post-call webhook's body, from what is stored now."""
    owner, sid = event["owner_id"], event["session_id"]
    session = session_wire(sessions_repo.get(db, owner, sid))
    cost = ledger.session_breakdown(db, owner, sid, limit=0)
    body = {
        "event": "session.ended",
        "event_id": event["event_id"],
        "agent_id": event["agent_id"],
        "session": session,
        "cost": {
            "total_cost": cost["total_cost"],
            "total_cost_nanos": cost["total_cost_nanos"],
            "cost_by_type": cost["cost_by_type"],
        },
    }
    return json.dumps(body, ensure_ascii=False).encode()


def _reason(e: BaseException) -> str:
    refused = e if isinstance(e, AddressRefused) else getattr(e, "os_error", None)
    if isinstance(refused, AddressRefused):
        return f"refused: {refused}"
    if isinstance(e, TimeoutError):
        return f"no answer within {TIMEOUT_SECONDS:g} s"
    return str(e) or type(e).__name__


class PostCallSender:
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
        self.policy = policy
        self.box = box
        self.max_attempts = max_attempts
        self.backoff = backoff_seconds
        self._http: aiohttp.ClientSession | None = None
        self._periodic = Periodic("post-call-webhooks", interval_seconds, self.deliver_due, log)

    def start(self) -> None:
        self._periodic.start()

    async def stop(self) -> None:
        await self._periodic.stop()
        if self._http is not None:
            await self._http.close()
            self._http = None

    async def deliver_due(self) -> int:
        now = datetime.now(UTC)
        until = to_iso(now + timedelta(seconds=TIMEOUT_SECONDS + CLAIM_MARGIN_SECONDS))
        events = await self.store.write(repo.claim_due, to_iso(now), until)
        return sum(await asyncio.gather(*(self._deliver(e) for e in events)))

    async def _deliver(self, event: dict[str, Any]) -> bool:
        if self._http is None:
            self._http = self.policy.session()
        attempt = event["attempts"] + 1
        body = await self.store.read(payload, event)
        secret = await self.store.write(calls_repo.callback_secret, self.box, event["owner_id"])
        status: int | None = None
        error: str | None = None
        signature = ""
        try:
            status, _, signature = await post_signed(
                self._http,
                self.policy,
                event["url"],
                body,
                secret=secret,
                timeout=TIMEOUT_SECONDS,
                headers={"X-Voxarena-Event-Id": event["event_id"]},
                max_answer=1024,
            )
            if not 200 <= status < 300:
                error = f"HTTP {status}"
        except (TimeoutError, aiohttp.ClientError, OSError) as e:
            error = _reason(e)
        delivered = error is None
        retry_after = None
        if not delivered and attempt < self.max_attempts:
            retry_after = to_iso(datetime.now(UTC) + timedelta(seconds=self.backoff * (2 ** (attempt - 1))))
        if not delivered:
            log.warning(
                "post-call webhook of session %s attempt %d failed: %s%s",
                event["session_id"],
                attempt,
                error,
                "; giving up" if retry_after is None else "",
            )
        await self.store.write(
            lambda db: repo.record_attempt(
                db,
                event,
                attempt=attempt,
                signature=signature,
                response_status=status,
                error=error,
                delivered=delivered,
                retry_after=retry_after,
            )
        )
        return delivered
