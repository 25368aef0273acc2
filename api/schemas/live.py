"""Phony's (003) call views: an agent's call, the calls in progress and the history, each call keyed by `call_sid`
(the product's session id; web calls appear too, with null numbers)."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, Field

from core.phone_calls import TELEPHONY_STATUS
from pipelines.pricing import usd

from .agents import ContextData, context_size
from .common import CAMPAIGN, E164_PATTERN, RequestBody, Variables, merge_variables
from .sessions import DateRange

_E164 = Field(pattern=E164_PATTERN, description="E.164, e.g. +15551234567")


Context = ContextData


class AgentCallRequest(RequestBody):
    to_number: str = _E164
    context: Context = Field(default=None, description="What the agent knows about this call from its first turn.")
    campaign: str | None = CAMPAIGN
    variables: Variables | None = None

    def merged_context(self) -> dict[str, Any] | None:
        return merge_variables(self.context, self.variables)


class AgentCallResponse(BaseModel):
    call_sid: str
    status: Literal["queued"]
    message: str
    call_id: str = Field(description="The outbound call's id in /api/calls/{id}/status.")


LiveStatus = Literal["in-progress", "ringing", "completed", "failed", "no-answer", "transferred"]


class LiveCall(BaseModel):
    id: str
    call_sid: str
    agent_id: str
    from_number: str | None
    to_number: str | None
    direction: Literal["inbound", "outbound"]
    status: LiveStatus
    started_at: str
    duration_seconds: int | None = Field(description="Seconds so far for a live call; the call's length once ended.")
    context: dict[str, Any] | None
    end_reason: str | None = None


class HistoryCall(LiveCall):
    cost: float = Field(description="The call's exact ledger total, in USD.")
    cost_nanos: int = Field(description="The same in nano-USD.")
    unpriced_event_count: int


class CallHistory(BaseModel):
    calls: list[HistoryCall]
    total: int
    limit: int
    offset: int


class HistoryQuery(DateRange):
    agent_id: str | None = Field(default=None, max_length=200)
    limit: int = Field(default=100, ge=1, le=1_000)
    offset: int = Field(default=0, ge=0, le=10_000_000)


def live_call_wire(rec: dict[str, Any], *, with_cost: bool = False) -> dict[str, Any]:
    from core.store.timefmt import now_iso, parse_iso, whole_seconds

    if rec["status"] != "ended":  # one word for a call under way, inbound, outbound or web: only ringing differs
        status = "ringing" if rec["call_status"] == "RINGING" else "in-progress"
    elif rec["call_status"]:
        status = TELEPHONY_STATUS[rec["call_status"]]
    else:
        status = "failed" if rec["error"] else "completed"  # a call that failed says why in its session
    if rec["end_reason"] == "transferred":
        status = "transferred"  # handed on by a supervisor's transfer (a completed call to 001)
    if rec["duration_ms"] is not None:
        duration = whole_seconds(rec["duration_ms"])
    else:
        duration = max(0, int((parse_iso(now_iso()) - parse_iso(rec["started_at"])).total_seconds()))
    out = {
        "id": rec["id"],
        "call_sid": rec["id"],
        "agent_id": rec["agent_id"],
        "from_number": rec["from_number"],
        "to_number": rec["to_number"] or rec["outbound_phone_number"],
        "direction": rec["direction"],
        "status": status,
        "started_at": rec["started_at"],
        "duration_seconds": duration,
        "context": rec["context"],
        "end_reason": rec["end_reason"],
    }
    if with_cost:
        nanos = rec["total_cost_nanos"] or 0
        out.update(cost=usd(nanos), cost_nanos=nanos, unpriced_event_count=rec["unpriced_count"] or 0)
    return out


class ContextUpdate(RequestBody):
    context: Annotated[dict[str, Any], AfterValidator(context_size)] = Field(
        description="Merged into the call's context: keys given replace those stored, a null value removes its key."
    )


class ContextUpdated(BaseModel):
    message: str
    call_sid: str
    context: dict[str, Any] = Field(description="The call's context now.")


class OverrideText(RequestBody):
    call_sid: str = Field(min_length=1, max_length=200)
    text: str = Field(min_length=1, max_length=2_000)


class OverrideDtmf(RequestBody):
    call_sid: str = Field(min_length=1, max_length=200)
    digit: str = Field(pattern=r"^[0-9*#A-D]$", description="One of 0-9 * # A-D, sent as an RFC 2833 event.")


TRANSFER_TARGET_PATTERN = rf"^({E164_PATTERN[1:-1]}|sips?:[^\s<>@]+@[^\s<>@]+)$"  # a number or a SIP URI


class OverrideTransfer(RequestBody):
    call_sid: str = Field(min_length=1, max_length=200)
    target: str = Field(
        max_length=500,
        pattern=TRANSFER_TARGET_PATTERN,
        description="E.164 (+15551111111) or a SIP URI (sip:desk@pbx.example.com).",
    )
    mode: Literal["cold", "warm"] = Field(
        default="cold",
        description="cold: the caller is handed on (SIP REFER) and the call ends `transferred`. warm: the caller "
        "is put on hold while the agent calls the target and briefs them; they are connected when the target "
        "accepts (DTMF 1 or a spoken yes), else the caller is back with the agent (docs/calls.md).",
    )


class OverrideEnd(RequestBody):
    call_sid: str = Field(min_length=1, max_length=200)


class OverrideDone(BaseModel):
    success: bool
    call_sid: str
    message: str
