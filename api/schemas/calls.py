"""Outbound calls: both of 001's APIs (`/api/calls/*` with uppercase `call_status`, `/api/telephony/*` with
lowercase `status`), each adding `end_reason` and `sip_status_code`; callbacks and their signing secret."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field

from core.phone_calls import TELEPHONY_STATUS
from core.store.timefmt import whole_seconds

from .common import CAMPAIGN, E164_PATTERN, RequestBody, Variables

CallStatus = Literal["RINGING", "ANSWERED", "COMPLETED", "FAILED", "NO_ANSWER"]
TelephonyStatus = Literal["ringing", "answered", "completed", "failed", "no-answer"]
_E164 = Field(pattern=E164_PATTERN, description="E.164, e.g. +15551234567")


class OutboundCallRequest(RequestBody):
    agent_id: str = Field(min_length=1, max_length=200)
    phone_number: str = _E164
    callback_url: str | None = Field(default=None, min_length=8, max_length=2_000)
    campaign: str | None = CAMPAIGN
    variables: Variables | None = None


class TelephonyCallRequest(RequestBody):
    agent_id: str = Field(min_length=1, max_length=200)
    phone_number: str = _E164
    campaign: str | None = CAMPAIGN
    variables: Variables | None = None


class OutboundCallResponse(BaseModel):
    call_id: str
    room_name: str
    status: CallStatus
    session_id: str


class CallStatusResponse(BaseModel):
    call_id: str
    status: CallStatus
    call_status: CallStatus
    call_direction: Literal["OUTBOUND"]
    outbound_phone_number: str
    room_name: str
    started_at: str
    ended_at: str | None
    duration: int | None = Field(description="Answered seconds (0 when never answered); null while live.")
    end_reason: str | None = Field(description="busy, declined, no_answer, ended_by_api, ... once it ended.")
    sip_status_code: int | None = Field(description="The far end's final SIP status, when it sent one.")
    session_id: str | None


class TelephonyCallResponse(BaseModel):
    call_id: str
    status: TelephonyStatus
    session_id: str


class TelephonyStatusResponse(BaseModel):
    call_id: str
    status: TelephonyStatus
    duration: int | None
    phone_number: str
    end_reason: str | None
    sip_status_code: int | None


class CallbackSecret(BaseModel):
    secret: str = Field(description="Verify X-Voxarena-Signature with it: t=<unix>,v1=<hex HMAC-SHA256 of 't.body'>.")


class CallbackDelivery(BaseModel):
    event_id: str | None
    event_status: CallStatus
    attempt: int
    url: str
    response_status: int | None
    error: str | None
    delivered: bool
    created_at: str


def status_wire(row: dict[str, Any]) -> dict[str, Any]:
    return {
        "call_id": row["id"],
        "status": row["status"],
        "call_status": row["status"],
        "call_direction": "OUTBOUND",
        "outbound_phone_number": row["phone_number"],
        "room_name": row["room_name"],
        "started_at": row["started_at"],
        "ended_at": row["ended_at"],
        "duration": whole_seconds(row["duration_ms"]),
        "end_reason": row["end_reason"],
        "sip_status_code": row["sip_status_code"],
        "session_id": row["session_id"],
    }


def telephony_wire(row: dict[str, Any]) -> dict[str, Any]:
    return {
        "call_id": row["id"],
        "status": TELEPHONY_STATUS[row["status"]],
        "duration": whole_seconds(row["duration_ms"]),
        "phone_number": row["phone_number"],
        "end_reason": row["end_reason"],
        "sip_status_code": row["sip_status_code"],
    }


def delivery_wire(row: dict[str, Any]) -> dict[str, Any]:
    return {
        k: row[k] for k in ("event_id", "event_status", "attempt", "url", "response_status", "error", "created_at")
    } | {"delivered": bool(row["delivered"])}
