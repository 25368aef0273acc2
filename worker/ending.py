"""How a call ends: one path for every way it can (the caller hangs up, a provider fails, the API ends it, a
transfer, no answer or a failed dial, the agent was deleted, the caller never joined), in one order:

1. the apology, where there is one (a provider failed for good), bounded by `APOLOGY_TIMEOUT`;
2. the end recorded on the session (and an outbound phone call) in one write, at the instant the call ended
   (after the apology): the session's duration and the line's billed minutes stop there. It is stored before the
   hang-up, whose room deletion makes LiveKit send room_finished: the reason recorded first is the one kept;
3. the hang-up: a warm transfer's human hung up (their side room deleted, their minutes billed), the SIP participant
   removed and the room deleted, so the far end gets a BYE (phone) or a disconnect (web) at once, never
   livekit-sip's media timeout or an open room;
4. the meter closed, the job shut down.

From the first step on, the agent answers nothing more (a turn still heard, a tool's follow-up reply): no LLM
request is made for a call that is over.

The first ending wins; any later one (the session closing because of the hang-up, the job's own end) waits for it
and changes nothing."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from livekit import api
from livekit.agents import JobContext

from core.store import calls as calls_repo
from core.store import sessions as sessions_repo
from core.store.timefmt import now_iso
from pipelines.config import DEFAULT_ERROR_MESSAGE

if TYPE_CHECKING:
    from .entrypoint import CallJob
    from .outbound import DialOutcome

log = logging.getLogger("voxarena.job")

# The apology before a failure hang-up plays out within this, or the call ends without waiting for it.
APOLOGY_TIMEOUT = 20.0
# The agent's last audio frame is played out when it leaves the agent, not when it reaches a phone: through the SFU,
# livekit-sip and the carrier it takes a few hundred milliseconds more. The hang-up waits that long after an
# apology, so the caller hears its last word (measured on the SIP tier: with no wait the BYE and the apology's last
# packet arrived together).
PLAYOUT_TAIL = 0.5
# Each LiveKit request of the hang-up (remove the participant, delete the room) is given up after this.
HANG_UP_TIMEOUT = 5.0


@dataclass(frozen=True)
class Ending:
    """Why a call ends. `failed_stage` (stt, llm, tts) is set when a provider failed for good: the agent apologises
    first unless the TTS is what failed. `dial` is a dial that was not answered (busy, declined, no answer)."""

    reason: str
    error: str | None = None
    failed_stage: str | None = None
    dial: DialOutcome | None = None


async def hang_up(ctx: JobContext, identity: str | None, *, why: str) -> None:
    """The caller leaves and the room closes. A SIP caller's line gets a BYE, or a failure response (486) to its
    INVITE when livekit-sip had not answered yet; a web caller is disconnected. Failures are logged: the session
    says how the call ended, and an empty room closes itself."""
    room = ctx.job.room.name
    if identity is not None:
        try:
            await asyncio.wait_for(
                ctx.api.room.remove_participant(api.RoomParticipantIdentity(room=room, identity=identity)),
                HANG_UP_TIMEOUT,
            )
        except api.TwirpError as e:
            if e.code != api.TwirpErrorCode.NOT_FOUND:
                log.error("%s: could not remove %s from room %s: %s", why, identity, room, e)
        except Exception as e:
            log.error("%s: could not remove %s from room %s: %s", why, identity, room, e)
    try:
        await asyncio.wait_for(ctx.api.room.delete_room(api.DeleteRoomRequest(room=room)), HANG_UP_TIMEOUT)
    except api.TwirpError as e:
        if e.code != api.TwirpErrorCode.NOT_FOUND:
            log.error("%s: could not close room %s: %s", why, room, e)
    except Exception as e:
        log.error("%s: could not close room %s: %s", why, room, e)


class CallEnd:
    """The one end path of a running call, `job` (see the module's docstring)."""

    def __init__(self, job: CallJob) -> None:
        self.ctx: JobContext = job.ctx
        self.job = job
        self._lock = asyncio.Lock()
        self.ended: Ending | None = None
        self.ended_at: str | None = None

    async def __call__(self, ending: Ending) -> None:
        async with self._lock:
            if self.ended is not None:
                return
            self.ended = ending
            await self._run(ending)

    async def _run(self, ending: Ending) -> None:
        job = self.job
        if job.transferring is not None and ending.error is None:
            # the caller's side hangs up as the transfer completes: that is the transfer
            ending = Ending("transferred")
        (log.error if ending.error else log.info)(
            "session %s ends: %s%s", job.session_id, ending.reason, f" ({ending.error})" if ending.error else ""
        )
        if job.agent is not None:  # nothing heard from now on is answered
            job.agent.stop_replying()
        if ending.failed_stage is not None and ending.failed_stage != "tts":
            await self._apologise()
        self.ended_at = ended_at = now_iso()
        # The end is stored before the room goes: its deletion makes LiveKit send room_finished, and the reason
        # recorded first is the one the call keeps.
        await self._record(ending, ended_at)
        if job.warm_transfer is not None:  # the human's leg hung up too, and its minutes billed
            await job.warm_transfer.close()
        await hang_up(self.ctx, job.caller_identity, why=f"session {job.session_id}")
        await self._bill_line(ended_at)
        await job.close_meter()
        self.ctx.shutdown(reason=ending.reason)

    async def _apologise(self) -> None:
        """The agent's `errorMessage`, heard in full: the caller's audio is no longer listened to, so nothing they
        say can start a turn (or a failing reply) that cuts it short."""
        session, spec = self.job.session, self.job.spec
        if session is None or spec is None:
            return
        try:
            session.input.set_audio_enabled(False)
            handle = session.say(spec.error_message or DEFAULT_ERROR_MESSAGE, allow_interruptions=False)
            await asyncio.wait_for(handle.wait_for_playout(), APOLOGY_TIMEOUT)
            await asyncio.sleep(PLAYOUT_TAIL)
        except Exception as e:  # the TTS may be gone too: the call still ends, the reason is already kept
            log.warning("session %s: the apology could not be played: %s", self.job.session_id, e)

    async def _record(self, ending: Ending, ended_at: str) -> None:
        job = self.job
        await job.recorder.close()
        if job.recording is not None:  # its last seconds written and its length stored, as the call ends
            await job.recording.finish()
        dial, phone_call_id = ending.dial, job.phone_call_id

        def record(db: Any) -> None:
            if dial is not None and phone_call_id is not None:
                calls_repo.transition(
                    db,
                    phone_call_id,
                    dial.status,
                    end_reason=dial.end_reason,
                    at=ended_at,
                    sip_status_code=dial.sip_status_code,
                    sip_status=dial.sip_status,
                )
            if job.caller is None:  # no conversation (an outbound call never answered says so at its end)
                sessions_repo.skip_analysis(
                    db,
                    job.session_id,
                    reason=f"skipped: nothing to analyse, the call ended before it began ({ending.reason})",
                )
            sessions_repo.end(
                db, job.session_id, reason=ending.reason, ended_at=ended_at, error=ending.error or job.recorder.error
            )

        try:
            await job.store.write(record)
        except Exception:
            log.exception("session %s: could not record the end of the call", job.session_id)

    async def _bill_line(self, ended_at: str) -> None:
        """The phone line's answered time, up to the instant the call ended (an outbound phone call's row has it:
        the API may have ended it first), and the call's recording (`storage_minutes`), when it has one."""
        job = self.job
        if job.meter is None:
            return
        try:
            if job.line is not None:
                await job.line.end(job.meter, carrier=job.settings.sip_carrier, ended_at=ended_at)
            elif job.phone_call_id is not None:
                row = await job.store.read(calls_repo.get_any, job.phone_call_id)
                if row["answered_at"] and row["duration_ms"]:
                    await job.meter.record_sip_minutes(
                        carrier=job.settings.sip_carrier,
                        trunk=job.settings.sip_outbound_trunk_id or None,
                        answered_ms=row["duration_ms"],
                    )
        except Exception:  # the sink retried and spilled what it could; the call still ends
            log.exception("session %s: the line's minutes could not be recorded", job.session_id)
        recording = job.recording
        if recording is not None and recording.duration_ms:
            try:
                await job.meter.record_storage_minutes(
                    storage=recording.storage.name, recorded_ms=recording.duration_ms
                )
            except Exception:
                log.exception("session %s: the recording's minutes could not be recorded", job.session_id)
