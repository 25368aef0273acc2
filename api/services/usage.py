"""Usage ingestion for workers running elsewhere (POST /api/usage/events): validation, ownership, pricing and
idempotency, in front of the ledger."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import sqlite_utils

from core.store import usage as ledger
from core.store.timefmt import parse_iso
from pipelines.metering import make_event
from pipelines.pricing import NANOS, PriceBook, cost_nanos, to_nanos

from ..errors import NotFound, ValidationFailed
from ..schemas.costs import UsageEventIn


def build_event(book: PriceBook, owner_id: str, body: UsageEventIn, key: str, at: datetime) -> dict[str, Any]:
    """The ledger row for an API event. Client-supplied prices must add up; without them, pricing.yaml applies."""
    if (body.unit_cost is None) != (body.total_cost is None):
        raise ValidationFailed("body: give both unit_cost and total_cost, or neither (then pricing.yaml applies)")
    event = make_event(
        book,
        key=key,
        owner_id=owner_id,
        session_id=body.session_id,
        agent_id=body.agent_id,
        provider=body.provider,
        model=body.model,
        event_type=body.event_type,
        quantity=body.quantity,
        token_kind=body.token_kind,
        at=at,
        source="api",
    )
    row = event.as_dict()
    if body.unit_cost is not None and body.total_cost is not None:
        expected = cost_nanos(body.quantity, body.unit_cost)
        given = to_nanos(body.total_cost)
        if given != expected:
            raise ValidationFailed(
                f"body total_cost: {body.total_cost} is not quantity x unit_cost "
                f"({body.quantity} x {body.unit_cost} = {Decimal(expected) / NANOS})"
            )
        row.update(unit_cost=body.unit_cost, total_cost_nanos=given, price_version="client")
    return row


def ingest(
    db: sqlite_utils.Database,
    book: PriceBook,
    owner_id: str,
    body: UsageEventIn,
    header_key: str | None,
    body_hash: str,
    user_id: str,
) -> tuple[dict[str, Any], bool]:
    if body.user_id is not None and body.user_id != user_id:
        raise ValidationFailed("body user_id: must be the authenticated user (or omitted)")
    if header_key and body.id and header_key != body.id:
        raise ValidationFailed("Idempotency-Key header and body id differ")
    key = "api:" + (header_key or body.id or str(uuid.uuid4()))
    if body.session_id is not None:
        row = db.execute(
            "SELECT agent_id FROM sessions WHERE id = ? AND owner_id = ?", [body.session_id, owner_id]
        ).fetchone()
        if row is None:
            raise NotFound(f"session {body.session_id} not found")
        if body.agent_id is None:
            body = body.model_copy(update={"agent_id": row[0]})
        elif body.agent_id != row[0]:
            raise ValidationFailed("body agent_id: not the agent of that session")
    if (
        body.agent_id is not None
        and db.execute("SELECT 1 FROM agents WHERE id = ? AND owner_id = ?", [body.agent_id, owner_id]).fetchone()
        is None
    ):
        raise NotFound(f"agent {body.agent_id} not found")
    try:
        at = parse_iso(body.occurred_at.replace(" ", "T")) if body.occurred_at else datetime.now(UTC)
    except ValueError as e:
        raise ValidationFailed(f"body occurred_at: {e}") from None
    event = build_event(book, owner_id, body, key, at)
    stored, created = ledger.record_api_event(db, event, body_hash)
    return ledger.event_wire(stored), created
