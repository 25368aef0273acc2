"""LiveKit webhook events applied to sessions, idempotently: a replayed delivery changes nothing. What an event means
is decided in ``core/webhook_events.py``; which sessions it may touch by its caller (``api/services/webhooks.py``:
those of the server that signed it)."""

from __future__ import annotations

from collections.abc import Collection
from typing import Any

import sqlite_utils

from core.store import dispatch, sessions
from core.store.timefmt import now_iso
from core.webhook_events import NO_AGENT_JOINED, effect_of


def live_calls_in_room(db: sqlite_utils.Database, room_name: str) -> list[dict[str, Any]]:
    """The room's calls not ended, with what tells their LiveKit server (their client's, or the product's)."""
    return list(
        db.query("SELECT id, owner_id, client_id FROM sessions WHERE room_name = ? AND status != 'ended'", [room_name])
    )


def apply_event(db: sqlite_utils.Database, event: dict[str, Any], session_ids: Collection[str]) -> bool:
    """Applies the event to those of the room's live sessions in `session_ids` (the others are left alone);
    returns False for a delivery already applied (same event id)."""
    cur = db.execute(
        "INSERT INTO webhook_deliveries (event_id, event, room_name, received_at) VALUES (?,?,?,?) "
        "ON CONFLICT DO NOTHING",
        [event["id"], event["event"], event.get("room"), now_iso()],
    )
    if cur.rowcount == 0:
        return False
    room = event.get("room")
    if not room:
        return True
    live = [sid for sid in sessions.live_sessions_for_room(db, room) if sid in session_ids]
    effect = effect_of(event)
    if effect.finish:
        for sid in live:
            if not dispatch.give_up(db, sid, error=NO_AGENT_JOINED, ended_at=effect.at):
                sessions.end(db, sid, reason="room_finished", ended_at=effect.at)
    if effect.caller_joined:
        dispatch.caller_joined(db, room, at=effect.at, session_ids=live)
    if effect.touch:
        for sid in live:
            sessions.touch(db, sid)
    return True
