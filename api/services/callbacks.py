"""Outbound-call callbacks: URLs checked when given and again when used, bodies signed Stripe-style, delivered from
the call-events outbox in order per call with exponential backoff. A failing receiver never touches the call.

Signed as core/signing.py says: the receiver recomputes ``X-Voxarena-Signature`` with the tenant's secret
(``GET /api/calls/callback-secret``) and rejects an old ``t``.
"""

from __future__ import annotations

import logging
from typing import Any

from core.netpolicy import AddressRefused, NetPolicy
from core.store import calls as repo
from core.store import outbox
from core.webhooks import Delivery

from ..errors import BadRequest
from .outbox import OutboxSender

log = logging.getLogger("voxarena.callbacks")


async def check_url(policy: NetPolicy, url: str) -> None:
    """When a callback URL is given: http(s), and a host the outbound address policy lets the product reach
    (core/netpolicy.py); a 400 naming the field otherwise."""
    try:
        await policy.check_url(url)
    except AddressRefused as e:
        raise BadRequest(f"body callback_url: {e}") from None


class CallbackSender(OutboxSender):
    """Delivers due callback events (api/services/outbox.py): within a call only its oldest event is due, so they
    arrive in order; calls are independent."""

    name = "callback-sender"
    log = log

    def any_due(self, db: Any, now: str) -> bool:
        return outbox.any_due(db, "call_events", now)

    def claim(self, db: Any, now: str, until: str) -> list[dict[str, Any]]:
        return repo.claim_due_events(db, now, until)

    async def target(self, event: dict[str, Any]) -> tuple[str, bytes]:
        return event["callback_url"], event["payload"].encode()

    def describe(self, event: dict[str, Any]) -> str:
        return f"callback {event['event_id']} for call {event['call_id']} ({event['status']})"

    def record(self, db: Any, event: dict[str, Any], attempt: int, sent: Delivery, retry_after: str | None) -> None:
        repo.record_attempt(
            db,
            event,
            attempt=attempt,
            url=event["callback_url"],
            signature=sent.signature,
            response_status=sent.status,
            error=sent.error,
            delivered=sent.delivered,
            retry_after=retry_after,
        )
