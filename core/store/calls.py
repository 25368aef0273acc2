"""Outbound calls, their status events (an outbox of callbacks) and each callback attempt; the per-tenant callback
signing secret. The rules (which status may follow which, what a move sets, the payloads) are
``core/phone_calls.py``'s; this module stores what they decide."""

from __future__ import annotations

import json
import secrets
import uuid
from typing import TYPE_CHECKING, Any

import sqlite_utils

from core import phone_calls as rules
from core.phone_calls import TERMINAL
from core.store import events, outbox
from core.store.errors import NotFoundError
from core.store.timefmt import now_iso

if TYPE_CHECKING:
    from core.secrets import SecretBox


def create(
    db: sqlite_utils.Database,
    owner_id: str,
    *,
    call_id: str,
    agent_id: str,
    session_id: str,
    room_name: str,
    phone_number: str,
    callback_url: str | None,
) -> dict[str, Any]:
    now = now_iso()
    db.execute(
        "INSERT INTO outbound_calls (id, owner_id, agent_id, session_id, room_name, phone_number, status, "
        "callback_url, started_at, created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, 'RINGING', ?, ?, ?, ?)",
        [call_id, owner_id, agent_id, session_id, room_name, phone_number, callback_url, now, now, now],
    )
    _event(db, get(db, owner_id, call_id), "RINGING", at=now)
    return get(db, owner_id, call_id)


def get(db: sqlite_utils.Database, owner_id: str, call_id: str) -> dict[str, Any]:
    rows = list(db.query("SELECT * FROM outbound_calls WHERE id = ? AND owner_id = ?", [call_id, owner_id]))
    if not rows:
        raise NotFoundError(f"call {call_id} not found")
    return rows[0]


def get_any(db: sqlite_utils.Database, call_id: str) -> dict[str, Any]:
    """For the job that dials it (the dispatch names the call; the owner comes with the row)."""
    rows = list(db.query("SELECT * FROM outbound_calls WHERE id = ?", [call_id]))
    if not rows:
        raise NotFoundError(f"call {call_id} not found")
    return rows[0]


def exists(db: sqlite_utils.Database, owner_id: str, call_id: str) -> bool:
    return (
        db.execute("SELECT 1 FROM outbound_calls WHERE id = ? AND owner_id = ?", [call_id, owner_id]).fetchone()
        is not None
    )


def transition(
    db: sqlite_utils.Database,
    call_id: str,
    status: str,
    *,
    end_reason: str | None = None,
    sip_status_code: int | None = None,
    sip_status: str | None = None,
    at: str | None = None,
) -> bool:
    """Move the call (and its session's ``call_status``) to ``status`` if that is a step forward; records the event
    (and queues its callback). Returns whether anything changed."""
    row = get_any(db, call_id)
    if not rules.can_move(row["status"], status):
        return False
    at = at or now_iso()
    sets = rules.step(row, status, at=at, end_reason=end_reason, sip_status_code=sip_status_code, sip_status=sip_status)
    db.execute(
        f"UPDATE outbound_calls SET {', '.join(f'{c} = ?' for c in sets)} WHERE id = ?", [*sets.values(), call_id]
    )
    if row["session_id"]:
        db.execute("UPDATE sessions SET call_status = ? WHERE id = ?", [status, row["session_id"]])
    row.update(sets)
    _event(db, row, status, at=at)
    return True


def end_with_session(
    db: sqlite_utils.Database, session_id: str, *, reason: str, error: str | None, at: str
) -> dict[str, Any] | None:
    """The outbound call of a session that is ending, ended too (if it was not already: COMPLETED when it was
    answered and nothing failed, FAILED otherwise), and returned: its end reason and instants are the session's.
    None for a session that is no outbound call."""
    row = live_for_session(db, session_id)
    if row is None:
        return None
    if row["status"] not in TERMINAL:
        transition(db, row["id"], rules.end_status(row["status"], error), end_reason=reason, at=at)
        row = get_any(db, row["id"])
    return row


def _event(db: sqlite_utils.Database, row: dict[str, Any], status: str, *, at: str) -> None:
    event_id = f"evt_{uuid.uuid4().hex}"
    payload = rules.callback_payload(row, status, event_id=event_id, at=at)
    db.execute(
        "INSERT INTO call_events (call_id, owner_id, status, sip_status_code, detail, created_at, event_id, "
        "payload, deliver_after, delivered_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        [
            row["id"],
            row["owner_id"],
            status,
            row.get("sip_status_code"),
            row.get("end_reason"),
            at,
            event_id,
            json.dumps(payload),
            at,
            None if row["callback_url"] else at,
        ],
    )  # no URL: nothing to deliver
    if row["session_id"] and _session_started(db, row["session_id"]):  # the live stream's view of the same change
        stream_status(db, row, at=at)


def _session_started(db: sqlite_utils.Database, session_id: str) -> bool:
    """The live stream tells of a call from its `call.started` on (the session's start streams the status the
    call has then), so a status change never comes before the call it belongs to."""
    found = db.execute("SELECT status FROM sessions WHERE id = ?", [session_id]).fetchone()
    return found is not None and found[0] != "pending"


def stream_status(db: sqlite_utils.Database, row: dict[str, Any], *, at: str | None = None) -> None:
    """The call's status now, as a `call.updated` live event."""
    events.emit(
        db,
        owner_id=row["owner_id"],
        call_sid=row["session_id"],
        event_type="call.updated",
        at=at,
        payload=rules.live_update_payload(row),
    )


def live_for_session(db: sqlite_utils.Database, session_id: str) -> dict[str, Any] | None:
    rows = list(db.query("SELECT * FROM outbound_calls WHERE session_id = ?", [session_id]))
    return rows[0] if rows else None


# ---- the callback outbox ----


def due_events(db: sqlite_utils.Database, now: str, limit: int = 50) -> list[dict[str, Any]]:
    """The oldest undelivered event of each call, when its time has come (later events of a call wait for it)."""
    return list(
        db.query(
            "SELECT e.*, c.callback_url FROM call_events e JOIN outbound_calls c ON c.id = e.call_id "
            "WHERE e.delivered_at IS NULL AND e.given_up = 0 AND e.deliver_after <= ? AND NOT EXISTS ("
            "  SELECT 1 FROM call_events p WHERE p.call_id = e.call_id AND p.id < e.id AND p.delivered_at IS NULL "
            "  AND p.given_up = 0) ORDER BY e.deliver_after, e.id LIMIT ?",
            [now, limit],
        )
    )


def claim_due_events(db: sqlite_utils.Database, now: str, until: str, limit: int = 50) -> list[dict[str, Any]]:
    """The due events (``due_events``), claimed for this sender until ``until`` (core/store/outbox.py)."""
    return outbox.claim(db, "call_events", due_events(db, now, limit), now, until)


def record_attempt(
    db: sqlite_utils.Database,
    event: dict[str, Any],
    *,
    attempt: int,
    url: str,
    signature: str,
    response_status: int | None,
    error: str | None,
    delivered: bool,
    retry_after: str | None,
) -> None:
    """One delivery attempt; ``retry_after`` None with ``delivered`` False gives the event up."""
    now = now_iso()
    db.execute(
        "INSERT INTO callback_deliveries (call_id, owner_id, event_status, attempt, url, response_status, "
        "error, signature, delivered, created_at, event_id) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        [
            event["call_id"],
            event["owner_id"],
            event["status"],
            attempt,
            url,
            response_status,
            error,
            signature,
            int(delivered),
            now,
            event["event_id"],
        ],
    )
    if delivered:
        db.execute("UPDATE call_events SET attempts = ?, delivered_at = ? WHERE id = ?", [attempt, now, event["id"]])
    elif retry_after is None:
        db.execute("UPDATE call_events SET attempts = ?, given_up = 1 WHERE id = ?", [attempt, event["id"]])
    else:
        db.execute(
            "UPDATE call_events SET attempts = ?, deliver_after = ? WHERE id = ?", [attempt, retry_after, event["id"]]
        )


def deliveries(db: sqlite_utils.Database, owner_id: str, call_id: str) -> list[dict[str, Any]]:
    get(db, owner_id, call_id)
    return list(
        db.query(
            "SELECT * FROM callback_deliveries WHERE call_id = ? AND owner_id = ? ORDER BY id", [call_id, owner_id]
        )
    )


# ---- the signing secret ----


def _new_secret() -> str:
    return "whsec_" + secrets.token_urlsafe(32)


def callback_secret(db: sqlite_utils.Database, box: SecretBox, owner_id: str) -> str:
    """The tenant's signing secret (made on first use); stored sealed, like every secret at rest."""
    row = db.execute("SELECT callback_secret FROM user_secrets WHERE owner_id = ?", [owner_id]).fetchone()
    if row is not None:
        return box.open(row[0])
    secret = _new_secret()
    db.execute(
        "INSERT INTO user_secrets (owner_id, callback_secret, created_at) VALUES (?, ?, ?)",
        [owner_id, box.seal(secret), now_iso()],
    )
    return secret


def rotate_callback_secret(db: sqlite_utils.Database, box: SecretBox, owner_id: str) -> str:
    secret = _new_secret()
    db.execute(
        "INSERT INTO user_secrets (owner_id, callback_secret, created_at) VALUES (?, ?, ?) "
        "ON CONFLICT (owner_id) DO UPDATE SET callback_secret = excluded.callback_secret, "
        "created_at = excluded.created_at",
        [owner_id, box.seal(secret), now_iso()],
    )
    return secret
