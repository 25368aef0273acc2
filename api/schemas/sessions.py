"""Session wire models (001: Session { id, agentId, startedAt, endedAt, transcript, duration, analysis?, direction? }
plus the outbound fields call_direction, outbound_phone_number, call_status, and a phone call's from/to numbers)."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any, Literal

from pydantic import BaseModel, Field, field_validator

from core.analysis import CallAnalysis
from core.store.timefmt import day_start, parse_iso, to_iso, whole_seconds
from pipelines.turn_clock import MARKS

from ..errors import ValidationFailed
from .common import Query

CallStatus = Literal["RINGING", "ANSWERED", "COMPLETED", "FAILED", "NO_ANSWER"]
AnsweredBy = Literal["human", "machine-vm", "machine-ivr", "machine-unavailable", "uncertain"]


class TurnHop(BaseModel):
    mark: Literal[MARKS]  # type: ignore[valid-type]
    at: float = Field(description="Seconds from the caller's last loud frame to this mark.")
    seconds: float = Field(description="Seconds since the mark before it (the first: since the last loud frame).")


class TurnMetrics(BaseModel):
    """Per-turn latency of an agent reply, in seconds."""

    end_of_turn_delay: float | None = Field(default=None, description="End of user speech to end-of-turn decision.")
    transcription_delay: float | None = None
    llm_ttft: float | None = Field(default=None, description="LLM time to first token.")
    tts_ttfb: float | None = Field(default=None, description="TTS time to first audio byte.")
    e2e_latency: float | None = Field(default=None, description="LiveKit's end of user speech to first agent audio.")
    voice_to_voice: float | None = Field(
        default=None,
        description="The caller's last loud frame at the agent's STT tap to the agent's first frame "
        "published to the room.",
    )
    hops: list[TurnHop] | None = Field(
        default=None,
        description="Where voice_to_voice went: the reply's marks in the order they happened; their "
        "`seconds` add up to voice_to_voice.",
    )
    llm_requests: int | None = Field(
        default=None,
        description="LLM requests made for this reply: 1, or more when preemptive generations were started on an "
        "STT final and discarded because the caller went on (metered with the call's LLM usage when the "
        "provider reported any usage before the request was cancelled).",
    )


class TurnProviders(BaseModel):
    stt: str | None = None
    llm: str | None = None
    tts: str | None = None


class TranscriptItem(BaseModel):
    speaker: Literal["USER", "AGENT"]
    content: str
    timestamp: str
    interrupted: bool = False
    metrics: TurnMetrics | None = None
    providers: TurnProviders | None = Field(
        default=None, description="Agent turns: the provider that served each stage (a fallback shows here)."
    )
    source: Literal["supervisor", "dtmf"] | None = Field(
        default=None,
        description="`supervisor`: text an operator had the agent say; `dtmf`: a key the caller "
        "pressed (ConversationRelay); null: the words said.",
    )


class ToolCall(BaseModel):
    """One call the agent's LLM made to one of its tools (docs/tools.md)."""

    id: str = Field(description="The LLM's call id.")
    name: str
    type: Literal["http", "end_call", "transfer_call", "send_dtmf"]
    arguments: dict[str, Any] | str = Field(description="As the LLM gave them (a string when cut at 4,000 chars).")
    status: Literal["running", "ok", "error", "timeout", "refused"]
    httpStatus: int | None = Field(description="HTTP tools: the status the business's server answered.")
    latencyMs: int | None
    result: str | None = Field(description="What the LLM was given back (the first 4,000 characters).")
    startedAt: str
    endedAt: str | None


class Session(BaseModel):
    id: str
    agentId: str
    startedAt: str
    endedAt: str | None
    transcript: list[TranscriptItem]
    duration: int | None = Field(description="Whole seconds; null while the call is live.")
    analysis: CallAnalysis | None
    direction: Literal["inbound", "outbound"]
    call_direction: Literal["INBOUND", "OUTBOUND"]
    outbound_phone_number: str | None
    from_number: str | None = Field(description="Inbound phone calls: the caller's number.")
    to_number: str | None = Field(
        description="Phone calls: the number dialled (the tenant's, inbound; the callee's, outbound)."
    )
    call_status: CallStatus | None
    roomName: str | None
    status: Literal["pending", "active", "ended"]
    endReason: str | None
    error: str | None
    analysisStatus: Literal["pending", "completed", "failed", "skipped"] | None
    analysisError: str | None = Field(description="Why the analysis failed or was skipped.")
    channel: Literal["voice", "text", "relay"] = Field(
        description="voice: a LiveKit room; text: /trigger-agent or /ws/chat; relay: Twilio ConversationRelay."
    )
    user_id: str | None = Field(description="The caller's own user id (a relay call: the caller's number).")
    conversation_id: str | None = Field(description="The caller's conversation id (a relay call: its CallSid).")
    previous_session_id: str | None = Field(description="The ended text session this one continues.")
    campaign: str | None = Field(default=None, description="The campaign it belongs to (given, or its agent's).")
    toolCalls: list[ToolCall] = Field(default_factory=list, description="The agent's tool calls, in order.")
    answeredBy: AnsweredBy | None = Field(
        default=None,
        description="Outbound calls with voicemail detection: who answered (null: not detected). The detail is "
        "the session's amd.result event.",
    )
    recordingUrl: str | None = Field(
        default=None,
        description="The call's recording (GET: audio/ogg, Range requests; DELETE removes it); null: none.",
    )
    recordingDuration: float | None = Field(
        default=None, description="The recording's length in seconds (null: none, or the call is still recorded)."
    )
    recordingError: str | None = Field(
        default=None,
        description="Why the call's recording could not be kept (its upload to object storage failed; the file "
        "stays on the node that recorded it, recordingUrl is null); null: none, or it was kept.",
    )


class WebhookAttempt(BaseModel):
    """One delivery attempt of a session's post-call webhook (its agent's ``webhookUrl``)."""

    attempt: int
    url: str
    responseStatus: int | None
    error: str | None
    delivered: bool
    createdAt: str


def webhook_attempt_wire(row: dict[str, Any]) -> dict[str, Any]:
    return {
        "attempt": row["attempt"],
        "url": row["url"],
        "responseStatus": row["response_status"],
        "error": row["error"],
        "delivered": bool(row["delivered"]),
        "createdAt": row["created_at"],
    }


class SessionList(BaseModel):
    sessions: list[Session]
    total: int


DATE_PATTERN = r"^\d{4}-\d{2}-\d{2}([T ]\d{2}:\d{2}(:\d{2}(\.\d{1,6})?)?(Z|[+-]\d{2}:?\d{2})?)?$"


class DateRange(Query):
    start_date: str | None = Field(
        default=None, pattern=DATE_PATTERN, description="ISO 8601 date or date-time (UTC if no offset); inclusive."
    )
    end_date: str | None = Field(
        default=None, pattern=DATE_PATTERN, description="ISO 8601 date (whole day included) or date-time; inclusive."
    )


class SessionQuery(DateRange):
    page: int = Field(default=1, ge=1, le=1_000_000)
    limit: int = Field(default=20, ge=1, le=100)
    direction: Literal["inbound", "outbound"] | None = None
    channel: Literal["voice", "text", "relay"] | None = None

    @field_validator("direction", "channel", mode="before")
    @classmethod
    def _lower(cls, v: object) -> object:
        return v.lower() if isinstance(v, str) else v


class DashboardMetrics(BaseModel):
    totalSessions: int
    totalAgents: int
    avgDuration: float = Field(description="Average duration of ended sessions, in seconds.")
    sessionsToday: int
    transcriptsToday: int = Field(description="Sessions started today (UTC) that hold a transcript.")
    totalCost: float = Field(description="USD, all time, from the usage ledger.")
    costToday: float
    costThisMonth: float


# ---- records to the wire ----


def session_wire(rec: dict[str, Any]) -> dict[str, Any]:
    """001's Session (camelCase) with its additions, from the repository's record."""
    from core.store.sessions import analysis_result

    analysis = rec["analysis_row"]
    analysis_status = analysis["status"] if analysis else ("pending" if rec["status"] == "ended" else None)
    return {
        "id": rec["id"],
        "agentId": rec["agent_id"],
        "startedAt": rec["started_at"],
        "endedAt": rec["ended_at"],
        "transcript": rec["transcript"],
        "duration": whole_seconds(rec["duration_ms"]),
        "analysis": analysis_result(analysis),
        "direction": rec["direction"],
        "call_direction": rec["direction"].upper(),
        "outbound_phone_number": rec["outbound_phone_number"],
        "from_number": rec.get("from_number"),
        "to_number": rec.get("to_number") or rec["outbound_phone_number"],
        "call_status": rec["call_status"],
        "roomName": rec["room_name"],
        "status": rec["status"],
        "endReason": rec["end_reason"],
        "error": rec["error"],
        "analysisStatus": analysis_status,
        "analysisError": analysis["error"] if analysis else None,
        "channel": rec["channel"],
        "user_id": rec["user_id"],
        "conversation_id": rec["conversation_id"],
        "previous_session_id": rec["previous_session_id"],
        "campaign": rec.get("campaign"),
        "toolCalls": [tool_call_wire(c) for c in rec.get("tool_calls") or ()],
        "answeredBy": rec.get("answered_by"),
        "recordingUrl": f"/api/sessions/{rec['id']}/recording"
        if rec.get("recording_key") and not rec.get("recording_error")
        else None,
        "recordingDuration": rec["recording_duration_ms"] / 1000
        if rec.get("recording_key") and rec.get("recording_duration_ms") is not None
        else None,
        "recordingError": rec.get("recording_error") if rec.get("recording_key") else None,
    }


def tool_call_wire(rec: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": rec["id"],
        "name": rec["name"],
        "type": rec["type"],
        "arguments": rec["arguments"],
        "status": rec["status"],
        "httpStatus": rec["http_status"],
        "latencyMs": rec["latency_ms"],
        "result": rec["result"],
        "startedAt": rec["started_at"],
        "endedAt": rec["ended_at"],
    }


def dashboard_wire(rec: dict[str, Any]) -> dict[str, Any]:
    return {
        "totalSessions": rec["total_sessions"],
        "totalAgents": rec["total_agents"],
        "avgDuration": round(rec["avg_duration_ms"] / 1000, 1),
        "sessionsToday": rec["sessions_today"],
        "transcriptsToday": rec["transcripts_today"],
    }


def date_bounds(q: DateRange) -> tuple[str | None, str | None]:
    """Inclusive start and end from the query, as store timestamps; the end is returned exclusive.

    A bare date as ``end_date`` includes that whole day, which is what a date picker means."""
    start = end = None
    try:
        if q.start_date:
            start = _bound(q.start_date, end=False)
        if q.end_date:
            end = _bound(q.end_date, end=True)
    except ValueError as e:
        raise ValidationFailed(f"query: invalid date: {e}") from None
    if start and end and start >= end:
        raise ValidationFailed("query: start_date must be before end_date")
    return start, end


def _bound(text: str, *, end: bool) -> str:
    if len(text) == 10:
        d = datetime.strptime(text, "%Y-%m-%d").date()
        return day_start(d + timedelta(days=1)) if end else day_start(d)
    dt = parse_iso(text.replace(" ", "T"))
    return to_iso(dt + timedelta(microseconds=1)) if end else to_iso(dt)
