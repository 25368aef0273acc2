"""The agents' post-call webhook outbox (core/webhooks.py): one event per session, enqueued in the same write that
stores (or skips) the session's analysis, so it is neither lost nor sent twice; claimed by one sender at a time
(several nodes may run one each), retried with backoff, every attempt kept in order. Each agent counts its failed
deliveries in a row (``agents.webhook_failures``): from `WEBHOOK_FAILING` on, its webhook shows as failing, until a
delivery succeeds."""

from __future__ import annotations

from typing import Any

import sqlite_utils

from core.store import outbox
from core.store.agents import WEBHOOK_FAILING
from core.store.dialect import json_text
from core.store.timefmt import now_iso

__all__ = ["WEBHOOK_FAILING", "attempts", "claim_due", "enqueue_session_ended", "record_attempt"]


def event_id(session_id: str) -> str:
    return f"session.ended:{session_id}"


def enqueue_session_ended(db: sqlite_utils.Database, session_id: str) -> bool:
    """The session's post-call webhook, when its agent has one; once per session (a later analysis of the same
    session does not send it again). Call it inside the write that stores the analysis."""
    row = db.execute(
        f"SELECT s.owner_id, s.agent_id, {json_text(db, 'a.config', 'webhookUrl')} FROM sessions s "
        "JOIN agents a ON a.id = s.agent_id WHERE s.id = ?",
        [session_id],
    ).fetchone()
    if row is None or not row[2]:
        return False
    now = now_iso()
    cur = db.execute(
        "INSERT INTO webhook_outbox (event_id, owner_id, agent_id, session_id, url, deliver_after, created_at) "
        "VALUES (?,?,?,?,?,?,?) ON CONFLICT DO NOTHING",
        [event_id(session_id), row[0], row[1], session_id, row[2], now, now],
    )
    return cur.rowcount > 0


def claim_due(db: sqlite_utils.Database, now: str, until: str, limit: int = 20) -> list[dict[str, Any]]:
    """The due events, claimed for this sender until ``until`` (core/store/outbox.py)."""
    due = list(
        db.query(
            "SELECT * FROM webhook_outbox WHERE delivered_at IS NULL AND given_up = 0 AND deliver_after <= ? "
            "ORDER BY deliver_after, id LIMIT ?",
            [now, limit],
        )
    )
    return outbox.claim(db, "webhook_outbox", due, now, until)


def record_attempt(
    db: sqlite_utils.Database,
    event: dict[str, Any],
    *,
    attempt: int,
    signature: str,
    response_status: int | None,
    error: str | None,
    delivered: bool,
    retry_after: str | None,
) -> None:
    """One delivery attempt; ``retry_after`` None with ``delivered`` False gives the event up. The agent's failures
    in a row go up by one, or back to 0 on a delivery."""
    now = now_iso()
    db.execute(
        "INSERT INTO webhook_attempts (event_id, owner_id, session_id, attempt, url, response_status, error, "
        "signature, delivered, created_at) VALUES (?,?,?,?,?,?,?,?,?,?)",
        [
            event["event_id"],
            event["owner_id"],
            event["session_id"],
            attempt,
            event["url"],
            response_status,
            error,
            signature,
            int(delivered),
            now,
        ],
    )
    if delivered:
        db.execute("UPDATE webhook_outbox SET attempts = ?, delivered_at = ? WHERE id = ?", [attempt, now, event["id"]])
        db.execute("UPDATE agents SET webhook_failures = 0 WHERE id = ?", [event["agent_id"]])
        return
    db.execute("UPDATE agents SET webhook_failures = webhook_failures + 1 WHERE id = ?", [event["agent_id"]])
    if retry_after is None:
        db.execute("UPDATE webhook_outbox SET attempts = ?, given_up = 1 WHERE id = ?", [attempt, event["id"]])
    else:
        db.execute(
            "UPDATE webhook_outbox SET attempts = ?, deliver_after = ? WHERE id = ?",
            [attempt, retry_after, event["id"]],
        )


def attempts(db: sqlite_utils.Database, owner_id: str, session_id: str) -> list[dict[str, Any]]:
    """Every delivery attempt of the session's post-call webhook, in order."""
    return list(
        db.query(
            "SELECT attempt, url, response_status, error, delivered, created_at FROM webhook_attempts "
            "WHERE owner_id = ? AND session_id = ? ORDER BY id",
            [owner_id, session_id],
        )
    )
