"""An inbound phone call's job. livekit-sip took a call to one of a tenant's numbers, the number's dispatch rule made
a room for it and dispatched the assigned agent here with `{agent_id, owner_id, direction: "inbound",
phone_number_id}` and no session: this module waits for the caller (the SIP participant), opens the session with the
caller's and the dialled number, and admits the call, or refuses it (the tenant is at its concurrent-call limit, the
agent is disabled, inactive or deleted, the number is no longer assigned to it) by ending the session with the
reason and hanging up on the caller (livekit-sip has not answered yet: the caller gets a failure response). The
answered line is metered as `sip_minutes` when the call ends.

A registered number no agent is assigned to has a rule too (livekit-server would drop a call matching none, and
the carrier would ring until its own timeout): it dispatches `{owner_id, direction: "inbound", phone_number_id,
refuse}` and no agent, and `refuse_unassigned` hangs up on the caller without a session or an agent."""

from __future__ import annotations

import asyncio
import logging
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from livekit import rtc
from livekit.agents import JobContext

from core.store import phone_numbers as numbers_repo
from core.store import sessions as sessions_repo
from core.store.db import Store
from core.store.errors import LimitError, NotFoundError
from core.store.timefmt import elapsed_ms, now_iso, to_iso
from pipelines.metering import CallMeter

from .config import DispatchMeta
from .ending import hang_up

log = logging.getLogger("voxarena.inbound")

SIP_JOIN_TIMEOUT = 30.0
CALLER_NUMBER = "sip.phoneNumber"  # livekit-sip's attributes of an inbound call's participant
DIALLED_NUMBER = "sip.trunkPhoneNumber"
CALL_STATUS = "sip.callStatus"  # ringing until livekit-sip answers, then active


@dataclass
class InboundLine:
    """The phone line of an admitted call. livekit-sip keeps the caller ringing (`sip.callStatus: ringing`) until the
    agent's audio is subscribed, then answers (200 OK) and marks the participant `active`: the line is billed from
    then to the end of the call, once. A call that never got answered costs no line time."""

    trunk_id: str | None
    answered_at: str | None = None
    metered: bool = field(default=False)

    def watch(self, room: rtc.Room, caller: rtc.RemoteParticipant) -> None:
        def changed(_: dict[str, str], participant: rtc.Participant) -> None:
            if participant.identity == caller.identity:
                self.check(participant.attributes)

        room.on("participant_attributes_changed", changed)
        self.check(caller.attributes)

    def check(self, attributes: dict[str, str]) -> None:
        if self.answered_at is None and attributes.get(CALL_STATUS) == "active":
            self.answered_at = now_iso()

    async def end(self, meter: CallMeter, *, carrier: str, ended_at: str) -> None:
        """Bills the answered time up to `ended_at`, the instant the call ended (once)."""
        if self.metered or self.answered_at is None:
            return
        self.metered = True
        await meter.record_sip_minutes(
            carrier=carrier, trunk=self.trunk_id, answered_ms=elapsed_ms(self.answered_at, ended_at)
        )


@dataclass(frozen=True)
class Admitted:
    session_id: str
    caller: rtc.RemoteParticipant
    line: InboundLine


def session_id_for(ctx: JobContext) -> str:
    """One session per call: derived from its room (one room per call), so a job LiveKit dispatches again into the
    same room finds the session the first one opened instead of opening another."""
    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"voxarena:inbound:{ctx.job.room.sid or ctx.room.name}"))


def _joined_at(caller: rtc.RemoteParticipant | None) -> str:
    """When the SIP participant joined the room (the server's clock, never later than now here): the call's start."""
    now = datetime.now(UTC)
    joined = caller.joined_at if caller is not None else None
    return to_iso(min(joined, now) if joined is not None else now)


def _refusal(
    db: Any,
    meta: DispatchMeta,
    agent: dict[str, Any],
    number: dict[str, Any] | None,
    caller: rtc.RemoteParticipant | None,
) -> tuple[str, str] | None:
    """Why this call is not taken, as (end_reason, error), or None to take it."""
    if caller is None:
        return "caller_never_joined", f"no SIP participant joined within {SIP_JOIN_TIMEOUT:.0f}s"
    if number is None:
        return "number_not_assigned", f"phone number {meta.phone_number_id} is not registered any more"
    if number["agent_id"] != meta.agent_id or number["owner_id"] != agent["owner_id"]:
        return "number_not_assigned", f"{number['phone_number']} is no longer assigned to agent {meta.agent_id}"
    if agent["deleted_at"] is not None:
        return "agent_deleted", f"agent {meta.agent_id} was deleted"
    if not agent["enabled"]:
        return "agent_disabled", f"agent {meta.agent_id} is disabled"
    if agent["status"] != "active":
        return "agent_inactive", f"agent {meta.agent_id} is {agent['status']}"
    try:
        sessions_repo.reserve_call_slot(db, agent["owner_id"])
    except LimitError as e:
        return "concurrency_limit", str(e)
    return None


async def _wait_for_caller(ctx: JobContext) -> rtc.RemoteParticipant | None:
    """Joins the room and waits (bounded) for the call's SIP participant; None when it never came."""
    await ctx.connect()
    try:
        return await asyncio.wait_for(
            ctx.wait_for_participant(kind=rtc.ParticipantKind.PARTICIPANT_KIND_SIP), SIP_JOIN_TIMEOUT
        )
    except TimeoutError:
        return None


async def admit(ctx: JobContext, store: Store, meta: DispatchMeta, agent: dict[str, Any]) -> Admitted | None:
    """Opens the call's session once the caller is here. Returns None when the call was refused: its session is
    ended with the reason (not analysed), the caller is hung up and the job shut down."""
    assert meta.phone_number_id is not None
    number_id = meta.phone_number_id
    session_id = session_id_for(ctx)
    caller = await _wait_for_caller(ctx)
    attributes = caller.attributes if caller is not None else {}
    started_at = _joined_at(caller)

    node_id = getattr(ctx.proc.userdata.get("settings"), "node_id", None)

    def open_session(db: Any) -> tuple[dict[str, Any] | None, tuple[str, str] | None]:
        try:
            number = numbers_repo.get_by_id(db, number_id)
        except NotFoundError:
            number = None
        if sessions_repo.exists(db, session_id):  # an earlier job of this call: the entrypoint sees whose it is
            return number, None
        refused = _refusal(db, meta, agent, number, caller)
        sessions_repo.create(
            db,
            owner_id=agent["owner_id"],
            agent_id=meta.agent_id,
            session_id=session_id,
            room_name=ctx.room.name,
            direction="inbound",
            from_number=attributes.get(CALLER_NUMBER) or None,
            to_number=attributes.get(DIALLED_NUMBER) or (number["phone_number"] if number else None),
            phone_number_id=meta.phone_number_id,
            started_at=started_at,
        )
        if refused is None:
            sessions_repo.mark_active(db, session_id, job_id=ctx.job.id, started_at=started_at, node_id=node_id)
        else:
            sessions_repo.end(db, session_id, reason=refused[0], error=refused[1])
            sessions_repo.skip_analysis(db, session_id, reason=f"the call was refused: {refused[1]}")
        return number, refused

    number, refused = await store.write(open_session)
    if refused is None:
        assert caller is not None
        log.info(
            "inbound call %s from %s to %s: agent %s answers",
            session_id,
            attributes.get(CALLER_NUMBER),
            attributes.get(DIALLED_NUMBER),
            meta.agent_id,
        )
        line = InboundLine(trunk_id=attributes.get("sip.trunkID") or (number["trunk_id"] if number else None))
        line.watch(ctx.room, caller)
        return Admitted(session_id=session_id, caller=caller, line=line)
    reason, error = refused
    log.warning(
        "inbound call %s from %s to %s refused (%s): %s",
        session_id,
        attributes.get(CALLER_NUMBER),
        attributes.get(DIALLED_NUMBER),
        reason,
        error,
    )
    await hang_up(ctx, caller.identity if caller is not None else None, why=f"refused call in room {ctx.room.name}")
    ctx.shutdown(reason=reason)
    return None


async def refuse_unassigned(ctx: JobContext, store: Store, meta: DispatchMeta) -> None:
    """A call to a registered number no agent was assigned to when it rang: no session, no agent. The caller is
    hung up as soon as it is in the room, so livekit-sip answers the INVITE with a failure. A number assigned
    meanwhile still refuses this call (its room was made by the refusing rule); the caller may call again."""
    assert meta.refuse is not None and meta.phone_number_id is not None
    caller = await _wait_for_caller(ctx)
    attributes = caller.attributes if caller is not None else {}
    try:
        number = await store.read(numbers_repo.get_by_id, meta.phone_number_id)
    except NotFoundError:
        why = f"phone number {meta.phone_number_id} is not registered any more"
    except Exception as e:  # the call is refused all the same: it was never going to an agent
        why = f"phone number {meta.phone_number_id} could not be read ({e})"
    else:
        if number["owner_id"] != meta.owner_id:
            why = f"{number['phone_number']} is registered by another tenant now"
        elif number["agent_id"]:
            why = f"{number['phone_number']} was assigned to agent {number['agent_id']} after this call rang"
        else:
            why = f"no agent is assigned to {number['phone_number']}"
    if caller is None:
        why += f"; no SIP participant joined within {SIP_JOIN_TIMEOUT:.0f}s"
    log.warning(
        "inbound call in room %s from %s to %s refused (%s): %s",
        ctx.room.name,
        attributes.get(CALLER_NUMBER),
        attributes.get(DIALLED_NUMBER),
        meta.refuse,
        why,
    )
    await hang_up(ctx, caller.identity if caller is not None else None, why=f"refused call in room {ctx.room.name}")
    ctx.shutdown(reason=meta.refuse)
