"""Phone numbers a tenant registered for inbound calls, with the LiveKit objects that route them: the number's
inbound trunk and its dispatch rule (to the assigned agent, or refusing the number's calls while none is). A number
is registered once across tenants: a call to it can go to one place only."""

from __future__ import annotations

import json
import uuid
from typing import Any

import sqlite_utils

from core.store.errors import INTEGRITY_ERRORS, ConflictError, NotFoundError
from core.store.timefmt import now_iso


def _record(row: dict[str, Any]) -> dict[str, Any]:
    return {**row, "capabilities": json.loads(row["capabilities"])}


def taken(db: sqlite_utils.Database, phone_number: str) -> bool:
    """Registered by any tenant."""
    return db.execute("SELECT 1 FROM phone_numbers WHERE phone_number = ?", [phone_number]).fetchone() is not None


def new_id() -> str:
    """A number's id, made before its row: its dispatch rule in LiveKit names it."""
    return f"pn_{uuid.uuid4().hex[:20]}"


def create(
    db: sqlite_utils.Database,
    owner_id: str,
    *,
    phone_number: str,
    friendly_name: str | None,
    capabilities: list[str],
    trunk_id: str,
    number_id: str | None = None,
    dispatch_rule_id: str | None = None,
) -> dict[str, Any]:
    now = now_iso()
    number_id = number_id or new_id()
    try:
        db.execute(
            "INSERT INTO phone_numbers (id, owner_id, phone_number, friendly_name, capabilities, trunk_id, "
            "dispatch_rule_id, created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            [
                number_id,
                owner_id,
                phone_number,
                friendly_name,
                json.dumps(capabilities),
                trunk_id,
                dispatch_rule_id,
                now,
                now,
            ],
        )
    except INTEGRITY_ERRORS:
        raise ConflictError(f"phone number {phone_number} is already registered") from None
    return get(db, owner_id, phone_number)


def get(db: sqlite_utils.Database, owner_id: str, phone_number: str) -> dict[str, Any]:
    rows = list(
        db.query("SELECT * FROM phone_numbers WHERE phone_number = ? AND owner_id = ?", [phone_number, owner_id])
    )
    if not rows:
        raise NotFoundError(f"phone number {phone_number} is not registered")
    return _record(rows[0])


def get_by_id(db: sqlite_utils.Database, number_id: str) -> dict[str, Any]:
    """For the worker: the number an inbound call's dispatch rule names."""
    rows = list(db.query("SELECT * FROM phone_numbers WHERE id = ?", [number_id]))
    if not rows:
        raise NotFoundError(f"phone number {number_id} is not registered")
    return _record(rows[0])


def exists(db: sqlite_utils.Database, owner_id: str, phone_number: str) -> bool:
    return (
        db.execute(
            "SELECT 1 FROM phone_numbers WHERE phone_number = ? AND owner_id = ?", [phone_number, owner_id]
        ).fetchone()
        is not None
    )


def list_(db: sqlite_utils.Database, owner_id: str) -> list[dict[str, Any]]:
    rows = db.query("SELECT * FROM phone_numbers WHERE owner_id = ? ORDER BY created_at, phone_number", [owner_id])
    return [_record(r) for r in rows]


def assign(
    db: sqlite_utils.Database, owner_id: str, phone_number: str, *, agent_id: str, dispatch_rule_id: str
) -> dict[str, Any]:
    get(db, owner_id, phone_number)
    db.execute(
        "UPDATE phone_numbers SET agent_id = ?, dispatch_rule_id = ?, updated_at = ? "
        "WHERE phone_number = ? AND owner_id = ?",
        [agent_id, dispatch_rule_id, now_iso(), phone_number, owner_id],
    )
    return get(db, owner_id, phone_number)


def release(
    db: sqlite_utils.Database, owner_id: str, phone_number: str, *, dispatch_rule_id: str | None
) -> dict[str, Any]:
    """No agent any more; `dispatch_rule_id` is the number's rule now (the one refusing its calls)."""
    get(db, owner_id, phone_number)
    db.execute(
        "UPDATE phone_numbers SET agent_id = NULL, dispatch_rule_id = ?, updated_at = ? "
        "WHERE phone_number = ? AND owner_id = ?",
        [dispatch_rule_id, now_iso(), phone_number, owner_id],
    )
    return get(db, owner_id, phone_number)


def delete(db: sqlite_utils.Database, owner_id: str, phone_number: str) -> None:
    get(db, owner_id, phone_number)
    db.execute("DELETE FROM phone_numbers WHERE phone_number = ? AND owner_id = ?", [phone_number, owner_id])
