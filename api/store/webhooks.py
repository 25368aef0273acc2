"""LiveKit webhook events applied to sessions, idempotently: a replayed delivery changes nothing."""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

import sqlite_utils

from . import sessions
from .timefmt import now_iso, to_iso


def apply_event(db: sqlite_utils.Database, event: dict[str, Any]) -> bool:
    """Returns False for a delivery already applied (same event id)."""
    cur = db.execute(
        "INSERT OR IGNORE INTO webhook_deliveries (event_id, event, room_name, received_at) VALUES (?,?,?,?)",
        [event["id"], event["event"], event.get("room"), now_iso()],
    )
    if cur.rowcount == 0:
        return False
    room = event.get("room")
    if not room:
        return True
    live = sessions.live_sessions_for_room(db, room)
    if event["event"] == "room_finished":
        at = to_iso(datetime.fromtimestamp(event["created_at"], tz=timezone.utc)) if event.get("created_at") else None
        for sid in live:
            sessions.end(db, sid, reason="room_finished", ended_at=at)
    elif event["event"] in {"participant_joined", "participant_left", "track_published"}:
        for sid in live:
            sessions.touch(db, sid)
    return True
