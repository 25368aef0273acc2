"""A warm transfer (issue 29, section 2): the caller waits on hold while the agent calls a human in a side room,
tells them what the call is about, and connects the two when the human accepts.

1. `transfer.started`: the agent stops listening and speaking; the caller hears hold audio on a track of the job
   (`VOXARENA_WARM_TRANSFER_HOLD_AUDIO`, or a quiet generated tone).
2. The job joins a side room (`<room>-transfer-<n>`) and dials the human there (`CreateSIPParticipant`, waiting for
   the answer within `VOXARENA_WARM_TRANSFER_RING_SECONDS`): a number through the outbound trunk, a SIP URI at its
   own host. The INVITE carries a one-line summary as `X-Voxarena-Summary` (LiveKit passes it on when the trunk
   sends headers).
3. The human hears the briefing (the call so far, spoken by the agent's own TTS) and presses 1 to accept or 2 to
   decline, within `VOXARENA_WARM_TRANSFER_DECIDE_SECONDS` after it.
4. Accepted (`transfer.accepted`): the hold audio stops and the job carries the audio between the two rooms; the
   agent says nothing more. Self-hosted livekit-server has no MoveParticipant ("not implemented" in its
   RoomManager), which is what LiveKit's own `WarmTransferTask` (livekit-agents `beta.workflows`) merges the calls
   with, so that task cannot connect them here; this module is the same flow on primitives livekit-server has.
   The call ends `transferred` when the caller or the human hangs up (the other is hung up then).
5. Declined, not answered, failed (`transfer.declined` with `reason` declined, no_answer or failed, and `detail`):
   the human's leg is hung up, the hold audio stops, the agent listens and speaks again; the caller of this module
   has the agent say so.

The human's answered time is metered as its own `sip_minutes` (usage key `<scope>/transfer-<n>`), billed when their
leg ends, or by the call's end path (worker/ending.py) when the call ends first."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from google.protobuf.duration_pb2 import Duration
from livekit import api, rtc
from livekit.agents import stt as agents_stt
from livekit.agents import utils
from livekit.agents.utils.audio import audio_frames_from_file

from core.netpolicy import AddressRefused
from core.sip_uri import transfer_policy
from core.store import events as events_repo
from pipelines.config import STT_SAMPLE_RATE

from .ending import Ending
from .inbound import CALL_STATUS
from .outbound import classify
from .warm_transfer_parts import SUMMARY_HEADER, DialPlan, call_summary, spoken, spoken_answer, tone_frames

if TYPE_CHECKING:
    from .entrypoint import CallJob

log = logging.getLogger("voxarena.job")

HUMAN_IDENTITY = "transfer-human"
ACCEPT_DIGIT, DECLINE_DIGIT = "1", "2"
# How long the merge waits for the two tracks it connects (both are up already, unless a leg is just leaving).
TRACK_WAIT_SECONDS = 5.0
HANG_UP_TIMEOUT = 5.0
# Frames in a row (about a second) a connected leg's audio source may refuse before its pump gives up.
MAX_REFUSED_FRAMES = 100


@dataclass(frozen=True)
class TransferOutcome:
    """How a warm transfer went: `connected`, or why not (`reason`: declined, no_answer, failed; `detail`: a
    sentence for a person)."""

    connected: bool
    reason: str | None = None
    detail: str | None = None
    caller_gone: bool = False  # the caller hung up (or the call ended) during the transfer: nobody to take back


@dataclass
class HumanLeg:
    """The human's answered phone leg of a warm transfer, metered as `sip_minutes` of its own."""

    key: str  # the leg's part of the usage key
    trunk: str | None
    answered_at: float  # time.time()
    ended_at: float | None = None
    billed: bool = False

    def end(self) -> None:
        if self.ended_at is None:
            self.ended_at = time.time()

    @property
    def answered_ms(self) -> int:
        return max(0, round(((self.ended_at or time.time()) - self.answered_at) * 1000))


class WarmTransfer:
    """One warm transfer of `job`'s caller to `target` (see the module's docstring). `run` returns the outcome
    once the two are connected or the caller is back with the agent; `close` (the call's end path) hangs the
    human up and stops what still runs."""

    def __init__(
        self, job: CallJob, target: str, *, reason: str | None = None, number: int = 1, interrupt: bool = True
    ) -> None:
        self.job = job
        self.interrupt = interrupt
        self.target = target
        self.reason = reason
        self.number = number
        self.side: rtc.Room | None = None
        self.side_name = f"{job.ctx.room.name}-transfer-{number}"
        self.leg: HumanLeg | None = None
        self.connected = False
        self.answered_by = "dtmf"  # how the human accepted: dtmf or speech
        self._human_gone = False  # their hang-up seen (by their status or their leave)
        self._hold_source: rtc.AudioSource | None = None
        self._hold_track: rtc.LocalAudioTrack | None = None
        self._hold_task: asyncio.Task[None] | None = None
        self._tasks: list[asyncio.Task[Any]] = []
        self._decision: asyncio.Future[tuple[str, str]] = asyncio.get_running_loop().create_future()
        self._closed = False
        tts = job.session.tts if job.session is not None else None
        self.rate = tts.sample_rate if tts is not None else 24_000

    # ---- the flow ----

    async def run(self) -> TransferOutcome:
        job, settings = self.job, self.job.settings
        await self._event("transfer.started", {"mode": "warm", "target": self.target, "reason": self.reason})
        try:
            plan = await DialPlan.of(self.target, trunk_id=settings.sip_outbound_trunk_id).pinned(
                transfer_policy(settings)
            )
        except (ValueError, AddressRefused) as e:
            return await self._back(TransferOutcome(False, "failed", f"the transfer could not start: {e}"))
        session, caller = job.session, job.caller
        if session is None or caller is None:
            return await self._back(TransferOutcome(False, "failed", "the caller is not connected"))
        try:
            await self._hold()
            outcome = await self._consult(plan)
        except Exception as e:
            log.exception("session %s: the warm transfer to %s failed", job.session_id, self.target)
            outcome = TransferOutcome(False, "failed", f"the transfer failed ({e or type(e).__name__})")
        if outcome.connected:
            return outcome
        return await self._back(outcome)

    async def _hold(self) -> None:
        """The agent stops listening and speaking; the caller hears the hold audio on a track of its own, which
        later carries the human's voice."""
        job = self.job
        assert job.session is not None
        if self.interrupt:  # a supervisor's transfer cuts the agent short; the agent's own tool runs in its turn
            await job.session.interrupt(force=True)
        job.session.input.set_audio_enabled(False)
        job.session.output.set_audio_enabled(False)
        self._hold_source = rtc.AudioSource(self.rate, 1)
        self._hold_track = rtc.LocalAudioTrack.create_audio_track("transfer", self._hold_source)
        options = rtc.TrackPublishOptions(source=rtc.TrackSource.SOURCE_MICROPHONE)
        await job.ctx.room.local_participant.publish_track(self._hold_track, options)
        self._hold_task = job.spawn(self._play_hold(self._hold_source), "transfer-hold")

    async def _play_hold(self, source: rtc.AudioSource) -> None:
        path = self.job.settings.warm_transfer_hold_audio
        if path:
            try:
                while True:  # AudioSource.capture_frame waits while its queue is full: this plays in real time
                    async for frame in audio_frames_from_file(path, sample_rate=self.rate, num_channels=1):
                        await source.capture_frame(frame)
            except Exception as e:  # a missing or unreadable file: the caller still hears that the line is up
                log.error(
                    "session %s: hold audio %s cannot be played (%s); the tone instead", self.job.session_id, path, e
                )
        frames = tone_frames(self.rate)
        while True:
            for frame in frames:
                await source.capture_frame(frame)

    async def _stop_hold(self) -> None:
        if self._hold_task is not None:
            await utils.aio.cancel_and_wait(self._hold_task)
            self._hold_task = None
        if self._hold_source is not None:
            # the queued tone dropped; a capture the cancel cut short settles (bounded), and what it queued goes too
            self._hold_source.clear_queue()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._hold_source.wait_for_playout(), 0.1)
            self._hold_source.clear_queue()

    async def _consult(self, plan: DialPlan) -> TransferOutcome:
        """The side room, the dial, the briefing and the human's answer."""
        job, settings = self.job, self.job.settings
        side = self.side = rtc.Room()
        side.on("sip_dtmf_received", self._on_dtmf)
        side.on("participant_disconnected", self._on_human_left)
        side.on("participant_attributes_changed", self._on_human_status)
        job.ctx.room.on("participant_disconnected", self._on_caller_left)
        me = job.ctx.room.local_participant.identity
        token = (
            api.AccessToken()  # the worker's LIVEKIT_API_KEY/SECRET, which it exports for its jobs
            .with_identity(me)
            .with_kind("agent")
            .with_grants(api.VideoGrants(room_join=True, room=self.side_name, can_publish=True, can_subscribe=True))
            .to_jwt()
        )
        await side.connect(os.environ["LIVEKIT_URL"], token)
        brief_source = rtc.AudioSource(self.rate, 1)
        brief_track = rtc.LocalAudioTrack.create_audio_track("transfer-brief", brief_source)
        options = rtc.TrackPublishOptions(source=rtc.TrackSource.SOURCE_MICROPHONE)
        await side.local_participant.publish_track(brief_track, options)

        assert job.session is not None
        briefing, header = call_summary(job.session.history.items, agent_name=self._agent_name(), reason=self.reason)
        ring = settings.warm_transfer_ring_seconds
        request = plan.request(
            room_name=self.side_name,
            participant_identity=HUMAN_IDENTITY,
            participant_name="transfer",
            wait_until_answered=True,
            play_dialtone=False,
            ringing_timeout=Duration(seconds=max(1, int(ring))),
            max_call_duration=Duration(seconds=int(settings.sip_max_call_seconds)),
            headers={SUMMARY_HEADER: header},
            # the From number: a trunk has its own; a SIP URI dialled directly needs one (LiveKit refuses none)
            sip_number=self._our_number() or ("" if plan.trunk_id else "voxarena"),
        )
        log.info("session %s: warm transfer: calling %s", job.session_id, self.target)
        dialling = job.spawn(self._dial(request), "transfer-dial")
        self._tasks.append(dialling)
        waits: set[asyncio.Future[Any]] = {dialling, self._decision}
        done, _ = await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
        if dialling not in done:  # the caller hung up while the human's phone rang
            await utils.aio.cancel_and_wait(dialling)
            return self._decided_outcome()
        e = dialling.result()
        if e is not None:
            dial = classify(e, ring_timeout=ring)
            reason = {"NO_ANSWER": "no_answer"}.get(dial.status) or (
                "declined" if dial.end_reason in ("busy", "declined") else "failed"
            )
            log.warning("session %s: warm transfer to %s: %s (LiveKit: %s)", job.session_id, self.target, reason, e)
            return TransferOutcome(False, reason, dial.detail)
        self.leg = HumanLeg(key=f"transfer-{self.number}", trunk=plan.trunk_id, answered_at=time.time())
        log.info("session %s: warm transfer: %s answered; briefing them", job.session_id, self.target)

        briefing_task = job.spawn(self._brief(brief_source, briefing), "transfer-brief")
        self._tasks.append(briefing_task)
        listening = job.spawn(self._listen(), "transfer-listen")
        self._tasks.append(listening)
        waits = {briefing_task, self._decision}
        await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
        try:
            await asyncio.wait_for(asyncio.shield(self._decision), settings.warm_transfer_decide_seconds)
        except TimeoutError:
            return TransferOutcome(
                False,
                "no_answer",
                f"the human did not accept within {settings.warm_transfer_decide_seconds:g} s of the briefing",
            )
        finally:
            await utils.aio.cancel_and_wait(briefing_task)
            brief_source.clear_queue()
        await utils.aio.cancel_and_wait(listening)
        kind, _ = self._decision.result()
        if kind != "accept":
            return self._decided_outcome()
        await self._merge(brief_source)
        return TransferOutcome(True)

    async def _dial(self, request: api.CreateSIPParticipantRequest) -> Exception | None:
        """Rings the human; returns once they answered (None) or with why not (LiveKit's error, classified by the
        caller: declined, busy, no answer)."""
        try:
            await self.job.ctx.api.sip.create_sip_participant(request)
        except Exception as e:
            return e
        return None

    async def _brief(self, source: rtc.AudioSource, text: str) -> None:
        session = self.job.session
        if session is None or session.tts is None:
            return
        async for frame in spoken(session.tts, text):
            await source.capture_frame(frame)
        await source.wait_for_playout()

    async def _listen(self) -> None:
        """The human's spoken answer, through the agent's own STT (when it streams): a short yes or no decides like
        the keys do."""
        session, side = self.job.session, self.side
        stt = session.stt if session is not None else None
        if stt is None or side is None or not stt.capabilities.streaming:
            return  # the keys still decide
        try:
            track = await self._audio_track(side, HUMAN_IDENTITY)
        except TimeoutError:
            log.warning("session %s: warm transfer: no audio from the human to listen to", self.job.session_id)
            return
        audio = rtc.AudioStream.from_track(track=track, sample_rate=STT_SAMPLE_RATE, num_channels=1)
        recognize = stt.stream()

        async def push() -> None:
            async for event in audio:
                recognize.push_frame(event.frame)

        pushing = self.job.spawn(push(), "transfer-listen-push")
        try:
            async for ev in recognize:
                if ev.type != agents_stt.SpeechEventType.FINAL_TRANSCRIPT or not ev.alternatives:
                    continue
                text = ev.alternatives[0].text
                answer = spoken_answer(text)
                if answer is not None:
                    log.info("session %s: warm transfer: the human said %r", self.job.session_id, text)
                    self.answered_by = "speech"
                    self._decide(answer, f"the human said {text!r}")
                    return
        finally:
            pushing.cancel()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(asyncio.gather(recognize.aclose(), audio.aclose()), HANG_UP_TIMEOUT)

    def _decided_outcome(self) -> TransferOutcome:
        kind, detail = self._decision.result()
        if kind == "caller_left":
            return TransferOutcome(False, "failed", detail, caller_gone=True)
        return TransferOutcome(False, kind, detail)

    def _decide(self, kind: str, detail: str) -> None:
        if not self._decision.done():
            self._decision.set_result((kind, detail))

    def _on_dtmf(self, dtmf: rtc.SipDTMF) -> None:
        if dtmf.participant is None or dtmf.participant.identity != HUMAN_IDENTITY:
            return
        if dtmf.digit == ACCEPT_DIGIT:
            self.answered_by = "dtmf"
            self._decide("accept", "the human pressed 1")
        elif dtmf.digit == DECLINE_DIGIT:
            self._decide("declined", "the human pressed 2: they declined the call")

    def _on_human_status(self, changed: dict[str, str], participant: rtc.Participant) -> None:
        # livekit-sip marks the leg `hangup` on the human's BYE, then leaves the room; LiveKit has been seen (in CI,
        # once) to miss that leave and keep the participant through its reconnect window (over 16 s): the status
        # is the first word of the hang-up, the leave the fallback
        if participant.identity == HUMAN_IDENTITY and changed.get(CALL_STATUS) == "hangup":
            self._on_human_left(participant)

    def _on_human_left(self, participant: rtc.Participant) -> None:
        if participant.identity != HUMAN_IDENTITY or self.leg is None or self._human_gone:
            return  # before the answer, LiveKit's dial reports a decline or no answer itself; after it, once
        self._human_gone = True
        self.leg.end()
        if self.connected:
            log.info("session %s: the human hung up; the transferred call ends", self.job.session_id)
            self.job.spawn(self._end_call(), "transfer-end")
        else:
            self._decide("declined", "the human hung up before accepting")

    def _on_caller_left(self, participant: rtc.RemoteParticipant) -> None:
        if self.job.caller is not None and participant.identity == self.job.caller.identity:
            self._decide("caller_left", "the caller hung up during the transfer")

    async def _end_call(self) -> None:
        await self.job.end(Ending("transferred"))

    async def _merge(self, side_source: rtc.AudioSource) -> None:
        """The caller and the human hear each other: the job carries each one's audio into the other's room."""
        job, side = self.job, self.side
        assert side is not None and self._hold_source is not None
        await self._stop_hold()
        caller_track = await self._audio_track(job.ctx.room, job.caller.identity if job.caller else "")
        human_track = await self._audio_track(side, HUMAN_IDENTITY)
        self.connected = True
        job.transferring = self.target
        hold_source = self._hold_source
        # a recorded call goes on being recorded: the caller on its side, the human where the agent was
        self._tasks.append(job.spawn(self._pump(caller_track, side_source, channel=0), "transfer-to-human"))
        self._tasks.append(job.spawn(self._pump(human_track, hold_source, channel=1), "transfer-to-caller"))
        await self._event("transfer.accepted", {"target": self.target, "by": self.answered_by})
        log.info("session %s: warm transfer: the caller and %s are connected", job.session_id, self.target)

    async def _audio_track(self, room: rtc.Room, identity: str) -> rtc.Track:
        async def found() -> rtc.Track:
            while True:
                participant = room.remote_participants.get(identity)
                for pub in participant.track_publications.values() if participant is not None else ():
                    if pub.kind == rtc.TrackKind.KIND_AUDIO and pub.track is not None:
                        return pub.track
                await asyncio.sleep(0.05)

        return await asyncio.wait_for(found(), TRACK_WAIT_SECONDS)

    async def _pump(self, track: rtc.Track, source: rtc.AudioSource, *, channel: int) -> None:
        stream = rtc.AudioStream.from_track(track=track, sample_rate=self.rate, num_channels=1)
        recording = self.job.recording
        refused = 0  # frames in a row the source refused
        try:
            async for event in stream:
                try:
                    await source.capture_frame(event.frame)
                    refused = 0
                except Exception as e:
                    # a frame refused right after the merge (the hold audio's last capture still settling, seen
                    # once on a loaded machine: "InvalidState - failed to capture frame") costs that frame only;
                    # a source that refuses a second of frames is broken, and the task fails saying so
                    refused += 1
                    if refused == 1 or refused >= MAX_REFUSED_FRAMES:
                        log.warning("session %s: warm transfer audio frame refused: %s", self.job.session_id, e)
                    if refused >= MAX_REFUSED_FRAMES:
                        raise
                if recording is not None:
                    recording.tap(channel, event.frame)
        finally:
            await stream.aclose()

    async def _back(self, outcome: TransferOutcome) -> TransferOutcome:
        """Not connected: the human hung up, the session told why, the caller back with the agent (unless the call
        is ending). Every LiveKit step is bounded: on a call ending meanwhile its room may be gone, and a request
        to it would never be answered (a SIP-tier run waited for one until the job's tasks were cancelled)."""
        job = self.job
        log.warning("session %s: warm transfer to %s: %s", job.session_id, self.target, outcome.detail)
        await self._release_human()
        await self._stop_hold()
        await self._event(
            "transfer.declined", {"target": self.target, "reason": outcome.reason, "detail": outcome.detail}
        )
        await self.bill()
        if outcome.caller_gone or job.end.ended is not None or job.session is None:
            return outcome  # the session is closing: nobody to take back
        if self._hold_track is not None:
            with contextlib.suppress(Exception):
                unpublish = job.ctx.room.local_participant.unpublish_track(self._hold_track.sid)
                await asyncio.wait_for(unpublish, HANG_UP_TIMEOUT)
        try:
            job.session.input.set_audio_enabled(True)
            job.session.output.set_audio_enabled(True)
        except Exception:
            log.exception("session %s: the agent could not take the caller back", job.session_id)
        return outcome

    async def _release_human(self) -> None:
        """The human's leg hung up (the side room deleted: LiveKit SIP sends the BYE), the job out of the room."""
        if self.leg is not None:
            self.leg.end()
        running = [t for t in self._tasks if t is not asyncio.current_task() and not t.done()]
        for task in running:
            task.cancel()
        if running:  # bounded: a provider's stream closing slowly must not hold the human's hang-up
            await asyncio.wait(running, timeout=HANG_UP_TIMEOUT)
        self.job.ctx.room.off("participant_disconnected", self._on_caller_left)
        if self.side is None:
            return
        side, self.side = self.side, None
        side.off("participant_disconnected", self._on_human_left)
        side.off("participant_attributes_changed", self._on_human_status)
        try:
            await asyncio.wait_for(
                self.job.ctx.api.room.delete_room(api.DeleteRoomRequest(room=self.side_name)), HANG_UP_TIMEOUT
            )
        except Exception as e:
            log.warning("session %s: could not close the transfer room %s: %s", self.job.session_id, self.side_name, e)
        with contextlib.suppress(Exception):
            await asyncio.wait_for(side.disconnect(), HANG_UP_TIMEOUT)

    async def bill(self) -> None:
        """The human's answered time as its own `sip_minutes`, once (their leg has ended, or the call is ending)."""
        job, leg = self.job, self.leg
        if leg is None or leg.billed or job.meter is None or job.meter_closed:
            return
        leg.end()
        leg.billed = True
        try:
            await job.meter.record_sip_minutes(
                carrier=job.settings.sip_carrier, trunk=leg.trunk, answered_ms=leg.answered_ms, leg=leg.key
            )
        except Exception:
            log.exception("session %s: the transfer leg's minutes could not be recorded", job.session_id)

    async def close(self) -> None:
        """The call is ending (worker/ending.py): the human hung up, their minutes billed, nothing left running."""
        if self._closed:
            return
        self._closed = True
        self._decide("caller_left", "the call ended during the transfer")
        await self._release_human()
        await self._stop_hold()
        await self.bill()

    # ---- helpers ----

    def _agent_name(self) -> str:
        return str(self.job.agent_row.get("name") or "")

    def _our_number(self) -> str | None:
        facts = self.job.facts
        return facts.get("to_number") if facts.get("direction") == "inbound" else facts.get("from_number")

    async def _event(self, kind: str, payload: dict[str, Any]) -> None:
        sid = self.job.session_id
        try:
            await self.job.store.write(lambda db: events_repo.emit_for_session(db, sid, kind, payload))
        except Exception:
            log.exception("session %s: the %s event could not be recorded", sid, kind)


async def warm_transfer(
    job: CallJob, target: str, *, reason: str | None = None, interrupt: bool = True
) -> TransferOutcome:
    """The caller warmly transferred to `target` (a tel: or sip: URI); see the module's docstring. One at a time:
    another transfer while one runs (or after the call was handed on) fails without touching the call."""
    if job.warm_transfer is not None or job.transferring is not None:
        return TransferOutcome(False, "failed", "another transfer is in progress or done")
    job.transfer_count += 1
    transfer = job.warm_transfer = WarmTransfer(
        job, target, reason=reason, number=job.transfer_count, interrupt=interrupt
    )
    outcome = await transfer.run()
    if not outcome.connected:
        job.warm_transfer = None
    return outcome


BACK_WITH_AGENT: dict[str, str] = {
    "declined": "I'm sorry, my colleague can't take your call right now. I'm still here to help.",
    "no_answer": "I'm sorry, nobody answered. I'm still here to help.",
    "failed": "I'm sorry, I couldn't transfer you. I'm still here to help.",
}


def back_with_agent(outcome: TransferOutcome) -> str:
    """What the agent says when the caller is back with it."""
    return BACK_WITH_AGENT.get(outcome.reason or "failed", BACK_WITH_AGENT["failed"])
