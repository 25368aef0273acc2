"""Live call events: what the /events/ws stream sends and what a call's audit trail lists.

Each event is written by the repository that makes the change it reports, inside the same write (so the stream can
never disagree with the store), by whichever process makes it: a job process records the transcript, the API a
context or an override. Ids grow in commit order (SQLite has one writer at a time), so ``id`` is the stream's order
and ``after(last_id)`` is all a reader needs to follow it.
"""

from __future__ import annotations

import json
from typing import Any

import sqlite_utils

from core.store.dialect import json_text
from core.store.errors import NotFoundError
from core.store.timefmt import now_iso

TYPES = (
    "call.started",
    "call.updated",
    "call.ended",
    "transcript.partial",
    "transcript.final",
    "context.updated",
    "error",
)
OVERRIDE_KINDS = ("text", "dtmf", "end", "transfer")


def emit(
    db: sqlite_utils.Database,
    *,
    owner_id: str,
    call_sid: str,
    event_type: str,
    payload: dict[str, Any] | None = None,
    at: str | None = None,
) -> int:
    """Record one event; call it inside the write that makes the change."""
    row = db.execute(
        "INSERT INTO live_events (owner_id, call_sid, type, payload, created_at) VALUES (?, ?, ?, ?, ?) RETURNING id",
        [owner_id, call_sid, event_type, json.dumps(payload or {}), at or now_iso()],
    ).fetchone()
    return int(row[0])


def stream_event(
    db: sqlite_utils.Database, owner_id: str, session_id: str, channel: str, event_type: str, payload: dict[str, Any]
) -> None:
    """The live event stream follows calls (voice and relay sessions); text chats are not calls."""
    if channel != "text":
        emit(db, owner_id=owner_id, call_sid=session_id, event_type=event_type, payload=payload)


def emit_for_session(
    db: sqlite_utils.Database,
    session_id: str,
    event_type: str,
    payload: dict[str, Any] | None = None,
    *,
    at: str | None = None,
) -> int:
    """The same for a session whose owner the caller does not have at hand."""
    row = db.execute("SELECT owner_id FROM sessions WHERE id = ?", [session_id]).fetchone()
    if row is None:
        raise NotFoundError(f"session {session_id} not found")
    return emit(db, owner_id=row[0], call_sid=session_id, event_type=event_type, payload=payload, at=at)


def has_error(db: sqlite_utils.Database, session_id: str, detail: str) -> bool:
    """Whether this call already reported this error (the recorder reports a provider failure as it happens; the
    session's end must not report it twice)."""
    return (
        db.execute(
            "SELECT 1 FROM live_events WHERE call_sid = ? AND type = 'error' "
            f"AND {json_text(db, 'payload', 'detail')} = ? LIMIT 1",
            [session_id, detail],
        ).fetchone()
        is not None
    )


def record_override(
    db: sqlite_utils.Database, owner_id: str, call_sid: str, kind: str, data: dict[str, Any], *, sent_by: dict[str, Any]
) -> int:
    """A supervisor's command to a live call (``override.text`` ...), with who sent it; the call must be the
    tenant's."""
    if kind not in OVERRIDE_KINDS:
        raise ValueError(f"unknown override {kind!r}")
    if db.execute("SELECT 1 FROM sessions WHERE id = ? AND owner_id = ?", [call_sid, owner_id]).fetchone() is None:
        raise NotFoundError(f"call {call_sid} not found")
    return emit(db, owner_id=owner_id, call_sid=call_sid, event_type=f"override.{kind}", payload={**data, **sent_by})


def last_id(db: sqlite_utils.Database) -> int:
    return int(db.execute("SELECT COALESCE(MAX(id), 0) FROM live_events").fetchone()[0])


def after(db: sqlite_utils.Database, last: int, limit: int = 500) -> list[dict[str, Any]]:
    """Every tenant's events after ``last``, oldest first: the API's tail of the table."""
    return list(db.query("SELECT * FROM live_events WHERE id > ? ORDER BY id LIMIT ?", [last, limit]))


def for_call(
    db: sqlite_utils.Database, owner_id: str, call_sid: str, *, limit: int, after_id: int = 0
) -> list[dict[str, Any]]:
    """One call's events, oldest first (those still kept; see ``prune``)."""
    return list(
        db.query(
            "SELECT * FROM live_events WHERE call_sid = ? AND owner_id = ? AND id > ? ORDER BY id LIMIT ?",
            [call_sid, owner_id, after_id, limit],
        )
    )


def prune(db: sqlite_utils.Database, before_iso: str) -> int:
    return db.execute("DELETE FROM live_events WHERE created_at < ?", [before_iso]).rowcount
