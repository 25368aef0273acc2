"""Delivers the agents' post-call webhooks (core/webhooks.py) from their outbox (core/store/agent_webhooks.py):
each due event claimed (so one node sends it), its body made at the time of sending (the session as
``GET /api/sessions/{id}`` shows it, with its tool calls and analysis, and its cost), signed, POSTed through the
outbound address policy without following redirects, and its attempt recorded; a failure is retried with
exponential backoff up to ``callback_max_attempts``."""

from __future__ import annotations

import json
import logging
from typing import Any

from core.store import agent_webhooks as repo
from core.store import outbox
from core.store import sessions as sessions_repo
from core.store import usage as ledger
from core.webhooks import Delivery

from ..schemas.sessions import session_wire
from .outbox import OutboxSender

log = logging.getLogger("voxarena.webhooks")


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


class PostCallSender(OutboxSender):
    name = "post-call-webhooks"
    log = log

    def any_due(self, db: Any, now: str) -> bool:
        return outbox.any_due(db, "webhook_outbox", now)

    def claim(self, db: Any, now: str, until: str) -> list[dict[str, Any]]:
        return repo.claim_due(db, now, until)

    async def target(self, event: dict[str, Any]) -> tuple[str, bytes]:
        return event["url"], await self.store.read(payload, event)

    def describe(self, event: dict[str, Any]) -> str:
        return f"post-call webhook of session {event['session_id']}"

    def record(self, db: Any, event: dict[str, Any], attempt: int, sent: Delivery, retry_after: str | None) -> None:
        repo.record_attempt(
            db,
            event,
            attempt=attempt,
            signature=sent.signature,
            response_status=sent.status,
            error=sent.error,
            delivered=sent.delivered,
            retry_after=retry_after,
        )
