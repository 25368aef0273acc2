"""Dialling an outbound call from its job: `CreateSIPParticipant` through the outbound trunk, and the SIP outcome
mapped to the call's status (never a timer of ours: LiveKit SIP reports answer, busy, decline and ring timeout).

How LiveKit reports each outcome (livekit-sip v1.11.0): answered -> the request returns (wait_until_answered);
486 -> twirp `resource_exhausted` (HTTP 429) with `sip_status_code=486`, which is a busy line, never a rate limit to
retry; 603 -> an error with `sip_status_code=603`; ring timeout -> twirp `canceled`/`deadline_exceeded` (HTTP 408)
with no SIP status; 408/480 from the far end -> no answer too.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from google.protobuf.duration_pb2 import Duration
from livekit import api
from livekit.protocol.sip import CreateSIPParticipantRequest, TransferSIPParticipantRequest

from core.livekit import sip_identity

log = logging.getLogger("voxarena.outbound")

NO_ANSWER_CODES = {408, 480, 487}
NO_ANSWER_TWIRP = {"canceled", "deadline_exceeded"}


@dataclass(frozen=True)
class DialOutcome:
    status: str  # ANSWERED, FAILED or NO_ANSWER
    end_reason: str | None = None
    sip_status_code: int | None = None
    sip_status: str | None = None
    detail: str | None = None  # what happened, as a sentence for a person (the session's error)


def _sip(code: int | None, phrase: str | None = None) -> str:
    return f" (SIP {code}{f' {phrase}' if phrase else ''})" if code is not None else ""


def classify(error: Exception, *, ring_timeout: float) -> DialOutcome:
    """The call's status from a failed `CreateSIPParticipant`, and a sentence saying what happened (LiveKit's own
    twirp message goes to the log)."""
    if not isinstance(error, api.ServerError):
        return DialOutcome(
            "FAILED",
            "dial_error",
            detail=f"Failed: the call could not be placed ({str(error) or type(error).__name__}).",
        )
    raw = error.metadata.get("sip_status_code")
    code = int(raw) if raw and raw.isdigit() else None
    phrase = error.metadata.get("sip_status")
    if code == 486 or code == 600:
        return DialOutcome("FAILED", "busy", code, phrase, f"Busy: the callee's line was busy{_sip(code)}.")
    if code == 603:
        return DialOutcome("FAILED", "declined", code, phrase, f"Declined: the callee declined the call{_sip(code)}.")
    if code in NO_ANSWER_CODES or (code is None and error.code in NO_ANSWER_TWIRP):
        return DialOutcome(
            "NO_ANSWER",
            "no_answer",
            code,
            phrase,
            f"No answer: the callee did not pick up within {ring_timeout:.0f} s{_sip(code)}.",
        )
    reason = f"sip_{code}" if code is not None else (error.code or "dial_error")
    return DialOutcome(
        "FAILED",
        reason,
        code,
        phrase,
        f"Failed: the call could not be connected{_sip(code, phrase) or f' ({error.code})'}.",
    )


async def dial(
    lkapi: api.LiveKitAPI,
    *,
    room: str,
    trunk_id: str,
    phone_number: str,
    call_id: str,
    ring_timeout: float,
    max_call_seconds: float,
) -> DialOutcome:
    """Rings the number and returns when it is answered or has failed."""
    request = CreateSIPParticipantRequest(
        sip_trunk_id=trunk_id,
        sip_call_to=phone_number,
        room_name=room,
        participant_identity=sip_identity(call_id),
        participant_name=phone_number,
        wait_until_answered=True,
        play_dialtone=False,
        ringing_timeout=Duration(seconds=int(ring_timeout)),
        max_call_duration=Duration(seconds=int(max_call_seconds)),
    )
    try:
        await lkapi.sip.create_sip_participant(request)
    except Exception as e:  # every failure is an outcome of the call, recorded with its reason
        outcome = classify(e, ring_timeout=ring_timeout)
        log.warning("call %s to %s: %s: %s (LiveKit: %s)", call_id, phone_number, outcome.status, outcome.detail, e)
        return outcome
    return DialOutcome("ANSWERED")


async def transfer(lkapi: api.LiveKitAPI, *, room: str, identity: str, target: str) -> str | None:
    """Hands the SIP participant on to `target` (a tel: or sip: URI): LiveKit SIP sends the far end a REFER and
    returns once the far end reports the transfer done (its NOTIFY). Returns why it failed, or None."""
    request = TransferSIPParticipantRequest(
        room_name=room, participant_identity=identity, transfer_to=target, play_dialtone=False
    )
    try:
        await lkapi.sip.transfer_sip_participant(request)
    except Exception as e:
        raw = e.metadata.get("sip_status_code") if isinstance(e, api.ServerError) else None
        return f"transfer to {target} failed{f' with SIP {raw}' if raw else ''}: {e}"
    return None
