"""Text and ConversationRelay conversations: what the agent's LLM is given as history, and which conversations are
due to close (idle) or to be analysed."""

from __future__ import annotations

from typing import Any

import sqlite_utils

from core.store.errors import NotFoundError

# A continued conversation's history follows at most this many sessions back.
MAX_HOPS = 20


def find_text_session(db: sqlite_utils.Database, owner_id: str, session_id: str) -> dict[str, Any] | None:
    """The tenant's text session with this id, or None (absent, another tenant's, or not a text session)."""
    rows = list(
        db.query("SELECT * FROM sessions WHERE id = ? AND owner_id = ? AND channel = 'text'", [session_id, owner_id])
    )
    return rows[0] if rows else None


def history(db: sqlite_utils.Database, session_id: str, *, limit: int) -> list[dict[str, Any]]:
    """The conversation so far, oldest first: this session's transcript items after those of the sessions it
    continues; the newest ``limit`` items."""
    chain: list[str] = []
    current: str | None = session_id
    while current is not None and len(chain) < MAX_HOPS:
        row = db.execute("SELECT previous_session_id FROM sessions WHERE id = ?", [current]).fetchone()
        if row is None:
            if not chain:
                raise NotFoundError(f"session {session_id} not found")
            break
        chain.append(current)
        current = row[0]
    items: list[dict[str, Any]] = []
    for sid in reversed(chain):
        items.extend(
            db.query(
                "SELECT speaker, content, source, interrupted, timestamp FROM transcript_items WHERE session_id = ? "
                "ORDER BY timestamp, id",
                [sid],
            )
        )
    return items[-limit:] if limit else []


def idle_sessions(db: sqlite_utils.Database, cutoff_iso: str) -> list[str]:
    """Live text sessions with no activity since the cutoff (a relay session lives as long as its socket)."""
    return [
        r[0]
        for r in db.execute(
            "SELECT id FROM sessions WHERE channel = 'text' AND status != 'ended' AND last_activity_at < ?",
            [cutoff_iso],
        )
    ]


def unanalysed(db: sqlite_utils.Database, ended_since_iso: str) -> list[str]:
    """Ended text and relay sessions without an analysis (ended by the sweeper, or by a process that stopped
    before it analysed them)."""
    return [
        r[0]
        for r in db.execute(
            "SELECT s.id FROM sessions s WHERE s.channel != 'voice' AND s.status = 'ended' AND s.ended_at >= ? "
            "AND NOT EXISTS (SELECT 1 FROM analyses a WHERE a.session_id = s.id) ORDER BY s.ended_at",
            [ended_since_iso],
        )
    ]
