"""The outbound call's rules on their own (core/phone_calls.py), without a database: which status may follow which,
what a move sets, and how a call still going ends with its session."""

from __future__ import annotations

import itertools

import pytest

from core import phone_calls

STATUSES = ("RINGING", "ANSWERED", "COMPLETED", "FAILED", "NO_ANSWER")
FORWARD = {
    ("RINGING", "ANSWERED"),
    ("RINGING", "COMPLETED"),
    ("RINGING", "FAILED"),
    ("RINGING", "NO_ANSWER"),
    ("ANSWERED", "COMPLETED"),
    ("ANSWERED", "FAILED"),
}


@pytest.mark.parametrize("current, status", itertools.product(STATUSES, STATUSES))
def test_only_steps_forward_are_moves_and_a_terminal_status_never_changes(current, status):
    assert phone_calls.can_move(current, status) == ((current, status) in FORWARD)


def test_a_move_sets_the_instants_the_reason_and_the_billed_duration_from_the_answer():
    row = {"answered_at": None}
    answered = phone_calls.step(row, "ANSWERED", at="2026-12-03T10:00:00.000Z", sip_status_code=200, sip_status="OK")
    assert answered == {
        "status": "ANSWERED",
        "updated_at": "2026-12-03T10:00:00.000Z",
        "sip_status_code": 200,
        "sip_status": "OK",
        "answered_at": "2026-12-03T10:00:00.000Z",
    }
    done = phone_calls.step(
        {"answered_at": answered["answered_at"]}, "COMPLETED", at="2026-12-03T10:01:30.250Z", end_reason="caller_hangup"
    )
    assert (done["duration_ms"], done["end_reason"], done["failure_reason"]) == (90_250, "caller_hangup", None)
    never = phone_calls.step(row, "NO_ANSWER", at="2026-12-03T10:00:30.000Z")
    assert (never["duration_ms"], never["end_reason"], never["failure_reason"]) == (0, "no_answer", None)
    failed = phone_calls.step(row, "FAILED", at="2026-12-03T10:00:30.000Z", end_reason="the line is busy (SIP 486)")
    assert failed["failure_reason"] == failed["end_reason"] == "the line is busy (SIP 486)"


@pytest.mark.parametrize(
    "current, error, ends",
    [("ANSWERED", None, "COMPLETED"), ("ANSWERED", "llm failed", "FAILED"), ("RINGING", None, "FAILED")],
)
def test_a_call_still_going_ends_with_its_session(current, error, ends):
    assert phone_calls.end_status(current, error) == ends
