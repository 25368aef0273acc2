"""LiveKit webhook events applied to sessions, idempotently: a replayed delivery changes nothing. Which sessions an
event may touch is decided by its caller (``api/services/webhooks.py``: those of the server that signed it)."""

from __future__ import annotations

from collections.abc import Collection
from datetime import UTC, datetime
from typing import Any

import sqlite_utils

from core.store import dispatch, sessions
from core.store.timefmt import now_iso, to_iso

AGENT_KIND = 4  # livekit ParticipantInfo.Kind.AGENT


def live_calls_in_room(db: sqlite_utils.Database, room_name: str) -> list[dict[str, Any]]:
    """The room's calls not ended, with what tells their LiveKit server (their client's, or the product's)."""
    return list(
        db.query("SELECT id, owner_id, client_id FROM sessions WHERE room_name = ? AND status != 'ended'", [room_name])
    )


def apply_event(db: sqlite_utils.Database, event: dict[str, Any], session_ids: Collection[str]) -> bool:
    """Applies the event to those of the room's live sessions in `session_ids` (the others are left alone);
    returns False for a delivery already applied (same event id)."""
    cur = db.execute(
        "INSERT OR IGNORE INTO webhook_deliveries (event_id, event, room_name, received_at) VALUES (?,?,?,?)",
        [event["id"], event["event"], event.get("room"), now_iso()],
    )
    if cur.rowcount == 0:
        return False
    room = event.get("room")
    if not room:
        return True
    live = [sid for sid in sessions.live_sessions_for_room(db, room) if sid in session_ids]
    at = to_iso(datetime.fromtimestamp(event["created_at"], tz=UTC)) if event.get("created_at") else None
    if event["event"] == "room_finished":
        for sid in live:
            # A call whose job never started is not a normal call that finished: say what happened.
            if not dispatch.give_up(db, sid, error="the room closed before any agent joined the call", ended_at=at):
                sessions.end(db, sid, reason="room_finished", ended_at=at)
    elif event["event"] in {"participant_joined", "participant_left", "track_published"}:
        if event["event"] == "participant_joined" and event.get("participant_kind") != AGENT_KIND:
            dispatch.caller_joined(db, room, at=at, session_ids=live)
        for sid in live:
            sessions.touch(db, sid)
    return True
