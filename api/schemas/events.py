"""The live event stream (003's `/events/ws`) and a call's stored events."""

from __future__ import annotations

import json
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from .common import Query


class LiveEvent(BaseModel):
    """003's `{type, call_sid, timestamp, ...}`; the fields after those depend on the type (see docs/calls.md)."""

    model_config = ConfigDict(extra="allow")

    id: int = Field(description="The event's place in the stream: ids only grow.")
    type: str
    call_sid: str
    timestamp: str


class CallEvents(BaseModel):
    call_sid: str
    events: list[LiveEvent]


class CallEventsQuery(Query):
    after: int = Field(default=0, ge=0, le=2**62, description="Only events with a larger id (to page on).")
    limit: int = Field(default=1_000, ge=1, le=10_000)


class EventStreamQuery(Query):
    call_sid: str | None = Field(
        default=None,
        min_length=1,
        max_length=200,
        description="Only this call's events (one of the tenant's calls, else 404).",
    )
    # Unreserved URL characters only (a JWT is base64url with dots, a key vxa_ and base64url), bounded: never
    # percent-encoded, the request line stays within aiohttp's 8 KiB
    token: str | None = Field(
        default=None,
        max_length=4_096,
        pattern=r"^[A-Za-z0-9._~-]+$",
        description="A JWT or an API key, for clients that cannot set headers (browsers); "
        "a header wins when both are sent.",
    )


def event_wire(row: dict[str, Any]) -> dict[str, Any]:
    return {
        **json.loads(row["payload"]),
        "id": row["id"],
        "type": row["type"],
        "call_sid": row["call_sid"],
        "timestamp": row["created_at"],
    }
