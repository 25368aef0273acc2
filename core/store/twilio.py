"""A tenant's Twilio auth token (sealed by the caller: this module stores and returns the sealed text only), and
the one-time tickets of ConversationRelay URLs (stored as their SHA-256 only)."""

from __future__ import annotations

import hashlib
from typing import Any

import sqlite_utils

from core.store.dialect import marks as in_marks
from core.store.timefmt import now_iso


def set_auth_token(db: sqlite_utils.Database, owner_id: str, sealed: str) -> str:
    now = now_iso()
    db.execute(
        "INSERT INTO twilio_settings (owner_id, auth_token, updated_at) VALUES (?,?,?) "
        "ON CONFLICT (owner_id) DO UPDATE SET auth_token = excluded.auth_token, updated_at = excluded.updated_at",
        [owner_id, sealed, now],
    )
    return now


def get(db: sqlite_utils.Database, owner_id: str) -> dict[str, Any] | None:
    rows = list(db.query("SELECT * FROM twilio_settings WHERE owner_id = ?", [owner_id]))
    return rows[0] if rows else None


def sealed_tokens(db: sqlite_utils.Database, owner_ids: list[str]) -> dict[str, str]:
    if not owner_ids:
        return {}
    marks = in_marks(owner_ids)
    return dict(
        db.execute(
            f"SELECT owner_id, auth_token FROM twilio_settings WHERE owner_id IN ({marks})", owner_ids
        ).fetchall()
    )


def ticket_hash(ticket: str) -> str:
    return hashlib.sha256(ticket.encode()).hexdigest()


def add_ticket(
    db: sqlite_utils.Database,
    ticket: str,
    owner_id: str,
    agent_id: str,
    *,
    now: str,
    expires_at: str,
    prune_before: str,
) -> None:
    db.execute("DELETE FROM relay_tickets WHERE expires_at < ?", [prune_before])
    db.execute(
        "INSERT INTO relay_tickets (ticket_hash, owner_id, agent_id, created_at, expires_at) VALUES (?,?,?,?,?)",
        [ticket_hash(ticket), owner_id, agent_id, now, expires_at],
    )


def open_ticket(db: sqlite_utils.Database, ticket: str, now: str) -> dict[str, Any] | None:
    """The ticket's row while it may still be used (not consumed, not expired), else None."""
    rows = list(
        db.query(
            "SELECT * FROM relay_tickets WHERE ticket_hash = ? AND consumed_at IS NULL AND expires_at > ?",
            [ticket_hash(ticket), now],
        )
    )
    return rows[0] if rows else None


def consume_ticket(db: sqlite_utils.Database, ticket: str, now: str) -> bool:
    """Use the ticket up; False when it was already used (by a replay, or on another node) or has expired."""
    cur = db.execute(
        "UPDATE relay_tickets SET consumed_at = ? WHERE ticket_hash = ? AND consumed_at IS NULL AND expires_at > ?",
        [now, ticket_hash(ticket), now],
    )
    return cur.rowcount == 1
