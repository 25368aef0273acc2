"""Phony's (003) phone numbers: registered by the tenant, assigned to an agent, released. `twilio_sid` is kept for
003's clients and holds the number's LiveKit SIP inbound trunk id."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field

from .common import E164_PATTERN, RequestBody

Capability = Literal["voice", "sms", "mms", "fax"]


def path_number(raw: str) -> str:
    """The number in a path: `%2B15551234567` and `+15551234567` alike (a `+` some client turned into a space, or
    left out, is put back)."""
    number = raw.strip()
    return number if number.startswith("+") else "+" + number


class PhoneNumberCreate(RequestBody):
    phone_number: str = Field(pattern=E164_PATTERN, description="E.164, e.g. +15551234567")
    friendly_name: str | None = Field(default=None, max_length=200)
    capabilities: list[Capability] = Field(
        default_factory=lambda: list[Capability](["voice"]), min_length=1, max_length=4
    )


class PhoneNumber(BaseModel):
    phone_number: str
    twilio_sid: str | None = Field(description="The number's LiveKit SIP inbound trunk id (ST_...).")
    friendly_name: str | None
    capabilities: list[str]
    status: Literal["available", "assigned"] = Field(description="`assigned` while an agent answers its calls.")
    agent_id: str | None
    id: str
    created_at: str
    updated_at: str


class AssignRequest(RequestBody):
    agent_id: str = Field(min_length=1, max_length=200)


class Assigned(BaseModel):
    message: str
    agent_id: str
    phone_number: str


class Released(BaseModel):
    message: str
    phone_number: str


class Unregistered(BaseModel):
    success: bool
    message: str


def number_wire(rec: dict[str, Any]) -> dict[str, Any]:
    return {
        "phone_number": rec["phone_number"],
        "twilio_sid": rec["trunk_id"],
        "friendly_name": rec["friendly_name"],
        "capabilities": rec["capabilities"],
        "status": "assigned" if rec["agent_id"] else "available",
        "agent_id": rec["agent_id"],
        "id": rec["id"],
        "created_at": rec["created_at"],
        "updated_at": rec["updated_at"],
    }
