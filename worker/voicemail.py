"""Voicemail detection on an outbound phone call: who answered is decided before the agent says a word.

LiveKit's answering-machine detection (`livekit.agents.voice.amd`, 1.8) listens to the callee's greeting through
the call's own STT and VAD once the SIP leg is active, and classifies it with the agent's own LLM (its requests are
metered like any other). While it listens, the agent's speech is held (LiveKit pauses playout authorization), and
the greeting of an agent that speaks first is said only once a person answered. The verdict:

- ``human`` (a short "Hello?" is decided by its length alone, a longer one by the LLM) and ``uncertain`` (nothing
  said within `NO_SPEECH_SECONDS`, or an ambiguous greeting): the call goes on as any call (the held greeting is
  the answer to the callee's first words); a person is never hung up on.
- ``machine-vm`` (a voicemail greeting): hang up, or with ``voicemailAction: leave_message`` say
  ``voicemailMessage`` once the greeting is over (after its beep and 1.5 s of silence), then hang up.
- ``machine-ivr`` and ``machine-unavailable`` (a menu, a full or unset mailbox): hang up.

A machine ends the call with ``endReason: voicemail`` (a campaign counts the attempt as ``voicemail``). The verdict
is the session's ``answeredBy`` and its ``amd.result`` event.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING, Any

from livekit import rtc
from livekit.agents.utils.participant import wait_for_track_publication
from livekit.agents.voice.amd import AMD, AMDCategory, AMDPredictionEvent

from core.store import sessions as sessions_repo
from pipelines.builder import VoiceAgent

from .ending import PLAYOUT_TAIL, Ending

if TYPE_CHECKING:
    from livekit.agents import AgentSession

    from pipelines.config import Voicemail

    from .entrypoint import CallJob

log = logging.getLogger("voxarena.job")

# The message left on a voicemail plays out within this, or the call ends without waiting for it.
MESSAGE_TIMEOUT = 60.0
# Nothing heard this long after the answer: `uncertain`, and the agent speaks (LiveKit's default is 10 s of dead air).
# livekit-sip publishes the callee's audio ~0.7 s after the 200 OK (measured on the SIP tier), so a "Hello?" said at
# once can go unheard: the person then hears the greeting after this silence.
NO_SPEECH_SECONDS = 3.0


class VoicemailScreen:
    """Detection on one outbound call: `start` before the agent's first word (the agent's `on_enter`), the verdict
    acted on in a task of the job."""

    def __init__(self, job: CallJob, settings: Voicemail, caller_identity: str) -> None:
        self.job = job
        self.settings = settings
        self.caller_identity = caller_identity
        self.detector: AMD | None = None

    async def start(self, session: AgentSession[Any]) -> None:
        """Starts listening once the callee's line is in the room (its track is published at the answer: LiveKit's
        detector would give up on it after 5 s of ringing); the agent's speech is held until the verdict, and its
        greeting is said then, to a person."""
        await wait_for_track_publication(
            self.job.ctx.room, identity=self.caller_identity, kind=rtc.TrackKind.KIND_AUDIO, wait_for_subscription=False
        )
        self.detector = AMD(
            session,
            llm=None,  # the agent's own LLM (never LiveKit's hosted inference)
            stt=None,  # the call's own STT transcripts
            ivr_detection=False,  # an IVR is hung up on, not navigated
            participant_identity=self.caller_identity,
            suppress_compatibility_warning=True,
            detection_options={"no_speech_threshold": NO_SPEECH_SECONDS},
        )
        await self.detector.__aenter__()
        self.job.spawn(self.act(session), "voicemail-detection")

    async def act(self, session: AgentSession[Any]) -> None:
        assert self.detector is not None
        try:
            result = await self.detector.execute()  # a machine's pending speech is interrupted here
        except RuntimeError as e:  # closed before a verdict: the call ended while it listened
            log.info("session %s: voicemail detection gave no verdict (%s)", self.job.session_id, e)
            return
        finally:
            await self.detector.aclose()
        await self.record(result)
        if not result.is_machine:
            if isinstance(agent := session.current_agent, VoiceAgent):
                agent.greet()
            return
        leave = (
            result.category == AMDCategory.MACHINE_VM
            and self.settings.action == "leave_message"
            and self.settings.message
        )
        if leave:
            await self.leave_message(session, self.settings.message or "")
        await self.job.end(Ending("voicemail"))

    async def record(self, result: AMDPredictionEvent) -> None:
        verdict: dict[str, Any] = {
            "outcome": result.category.value,
            "reason": result.reason,
            "transcript": result.transcript,
            "speechDuration": round(result.speech_duration, 3),
            "delay": round(result.delay, 3),
        }
        log.info(
            "session %s: answered by %s (%s, after %.1f s of speech)",
            self.job.session_id,
            verdict["outcome"],
            result.reason,
            result.speech_duration,
        )
        sid = self.job.session_id
        try:
            await self.job.store.write(lambda db: sessions_repo.set_answered_by(db, sid, verdict))
        except Exception:  # the call goes on; the log has the verdict
            log.exception("session %s: could not store who answered", sid)

    async def leave_message(self, session: AgentSession, message: str) -> None:
        """The message, heard whole: a machine's beep or a second greeting does not cut it short."""
        try:
            session.input.set_audio_enabled(False)
            handle = session.say(message, allow_interruptions=False)
            await asyncio.wait_for(handle.wait_for_playout(), MESSAGE_TIMEOUT)
            await asyncio.sleep(PLAYOUT_TAIL)
        except Exception as e:  # the call still ends as a voicemail; the log says the message was not left
            log.warning("session %s: the voicemail message could not be played: %s", self.job.session_id, e)
