"""The outbound phone call's rules, apart from where it is stored (``core/store/calls.py`` holds the queries).

Statuses are 001's: RINGING -> ANSWERED -> COMPLETED, or RINGING -> FAILED | NO_ANSWER (a failure after answering
is FAILED too). Only SIP outcomes move them (the job that dials reports each one); a terminal status never changes.
A call and its session end together: one reason, one instant."""

from __future__ import annotations

from typing import Any

from core.store.timefmt import elapsed_ms, whole_seconds

TERMINAL = ("COMPLETED", "FAILED", "NO_ANSWER")
NEXT = {"RINGING": ("ANSWERED", *TERMINAL), "ANSWERED": ("COMPLETED", "FAILED")}
# 001's statuses as Phony's active view and the callbacks name them
TELEPHONY_STATUS = {
    "RINGING": "ringing",
    "ANSWERED": "answered",
    "COMPLETED": "completed",
    "FAILED": "failed",
    "NO_ANSWER": "no-answer",
}


def can_move(current: str, status: str) -> bool:
    """Whether ``status`` is a step forward from ``current`` (a terminal status never changes)."""
    return status in NEXT.get(current, ())


def step(
    row: dict[str, Any],
    status: str,
    *,
    at: str,
    end_reason: str | None = None,
    sip_status_code: int | None = None,
    sip_status: str | None = None,
) -> dict[str, Any]:
    """The columns a move of ``row`` to ``status`` at ``at`` sets (the caller has checked ``can_move``)."""
    sets: dict[str, Any] = {"status": status, "updated_at": at}
    if sip_status_code is not None:
        sets.update(sip_status_code=sip_status_code, sip_status=sip_status)
    if status == "ANSWERED":
        sets["answered_at"] = at
    if status in TERMINAL:
        sets.update(
            ended_at=at,
            end_reason=end_reason or status.lower(),
            failure_reason=end_reason if status != "COMPLETED" else None,
            duration_ms=elapsed_ms(row["answered_at"], at) if row["answered_at"] else 0,
        )
    return sets


def end_status(current: str, error: str | None) -> str:
    """How a call still going ends with its session: COMPLETED when it was answered and nothing failed."""
    return "COMPLETED" if current == "ANSWERED" and error is None else "FAILED"


def callback_payload(row: dict[str, Any], status: str, *, event_id: str, at: str) -> dict[str, Any]:
    """The body of the ``call.status`` callback (signed and delivered from the outbox) for ``row`` at ``status``."""
    return {
        "id": event_id,
        "type": "call.status",
        "created_at": at,
        "call_id": row["id"],
        "session_id": row["session_id"],
        "call_status": status,
        "status": TELEPHONY_STATUS[status],
        "phone_number": row["phone_number"],
        "end_reason": row.get("end_reason"),
        "sip_status_code": row.get("sip_status_code"),
        "duration": whole_seconds(row.get("duration_ms")),
    }


def live_update_payload(row: dict[str, Any]) -> dict[str, Any]:
    """The call's status now, as the payload of a ``call.updated`` live event."""
    return {
        "status": TELEPHONY_STATUS[row["status"]],
        "call_status": row["status"],
        "call_id": row["id"],
        "end_reason": row.get("end_reason"),
        "sip_status_code": row.get("sip_status_code"),
    }
