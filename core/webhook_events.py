"""What a LiveKit webhook event means for the calls of its room, decided here and carried out by the repository
(``core/store/webhooks.py``) in one transaction: which calls it may touch is decided by the API
(``api/services/webhooks.py``: those of the server that signed it)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from core.store.timefmt import to_iso

AGENT_KIND = 4  # livekit ParticipantInfo.Kind.AGENT
ACTIVITY = frozenset({"participant_joined", "participant_left", "track_published"})


@dataclass(frozen=True)
class Effect:
    """`finish`: the room is gone, so its calls end (`room_finished`, or given up when no agent ever joined);
    `caller_joined`: a caller is in the room (the dispatch clock starts); `touch`: the calls are alive (the orphan
    sweeper leaves them); `at`: when LiveKit says it happened (None: now)."""

    finish: bool = False
    caller_joined: bool = False
    touch: bool = False
    at: str | None = None


# A call whose job never started is not a normal call that finished: its session says what happened.
NO_AGENT_JOINED = "the room closed before any agent joined the call"


def effect_of(event: dict[str, Any]) -> Effect:
    at = to_iso(datetime.fromtimestamp(event["created_at"], tz=UTC)) if event.get("created_at") else None
    kind = event.get("event")
    if kind == "room_finished":
        return Effect(finish=True, at=at)
    if kind in ACTIVITY:
        joined = kind == "participant_joined" and event.get("participant_kind") != AGENT_KIND
        return Effect(caller_joined=joined, touch=True, at=at)
    return Effect(at=at)
