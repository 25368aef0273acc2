"""Dispatched calls waiting for their job: what the dispatch watchdog reads and writes. A session stays `pending`
from the token until its job starts it; these queries find the ones whose caller is waiting for an agent."""

from __future__ import annotations

from collections.abc import Collection
from typing import Any

import sqlite_utils

from core.store import sessions
from core.store.dialect import marks as in_marks
from core.store.timefmt import now_iso

NO_AGENT = "no_agent_available"


def record_dispatch(db: sqlite_utils.Database, session_id: str, dispatch_id: str, *, at: str | None = None) -> int:
    """A dispatch was made for the session; returns how many have been made for it."""
    db.execute(
        "UPDATE sessions SET dispatch_id = ?, dispatch_attempts = dispatch_attempts + 1, dispatched_at = ? "
        "WHERE id = ?",
        [dispatch_id, at or now_iso(), session_id],
    )
    row = db.execute("SELECT dispatch_attempts FROM sessions WHERE id = ?", [session_id]).fetchone()
    return int(row[0]) if row else 0


def waiting(db: sqlite_utils.Database, created_since: str) -> list[dict[str, Any]]:
    """Dispatched sessions whose job has not started, newest tokens first bounded by `created_since`; an outbound
    phone call's row carries its `call_id` (its job dials it)."""
    return list(
        db.query(
            "SELECT id, owner_id, agent_id, client_id, room_name, direction, outbound_phone_number, dispatch_id, "
            "dispatch_attempts, dispatched_at, caller_joined_at, created_at, "
            "(SELECT c.id FROM outbound_calls c WHERE c.session_id = sessions.id) AS call_id FROM sessions "
            "WHERE status = 'pending' AND dispatch_id IS NOT NULL AND created_at >= ? ORDER BY created_at",
            [created_since],
        )
    )


def reserved_calls(db: sqlite_utils.Database, created_since: str) -> int:
    """Calls dispatched but not started yet: they will need a worker slot soon."""
    return int(
        db.execute(
            "SELECT COUNT(*) FROM sessions WHERE status = 'pending' AND dispatch_id IS NOT NULL AND created_at >= ?",
            [created_since],
        ).fetchone()[0]
    )


def caller_joined(
    db: sqlite_utils.Database, room_name: str, *, at: str | None = None, session_ids: Collection[str] | None = None
) -> int:
    """The caller is in the room: the dispatch timeout of its waiting sessions (of `session_ids` only, if given)
    counts from now."""
    only = "" if session_ids is None else f" AND id IN ({in_marks(session_ids)})"
    return db.execute(
        "UPDATE sessions SET caller_joined_at = ? WHERE room_name = ? AND status = 'pending' "
        "AND caller_joined_at IS NULL" + only,
        [at or now_iso(), room_name, *(session_ids or ())],
    ).rowcount


def give_up(db: sqlite_utils.Database, session_id: str, *, error: str, ended_at: str | None = None) -> bool:
    """No agent ever took the call: it ends as `no_agent_available`, with nothing to analyse. Only a session still
    waiting is ended; one whose job started meanwhile is left alone (returns False)."""
    row = db.execute("SELECT status FROM sessions WHERE id = ?", [session_id]).fetchone()
    if row is None or row[0] != "pending":
        return False
    sessions.end(db, session_id, reason=NO_AGENT, error=error, ended_at=ended_at)
    sessions.skip_analysis(db, session_id, reason="skipped: no agent joined the call")
    return True
