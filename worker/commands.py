"""What a running call does with the API's commands (core/control.py): update its context, say an operator's text,
send DTMF, transfer the caller. The control channel (worker/control.py) hands each command to its handler here, in
a task the job owns."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING

from livekit import rtc
from livekit.agents import AgentSession

from core.control import DTMF_CODES, Say, SendDtmf, Transfer, UpdateContext
from core.store import events as events_repo
from core.variables import fill
from pipelines.builder import VoiceAgent
from pipelines.config import prompt_with_context

from .control import ControlChannel
from .ending import Ending
from .outbound import transfer
from .warm_transfer import back_with_agent, warm_transfer

if TYPE_CHECKING:
    from .entrypoint import CallJob

log = logging.getLogger("voxarena.job")


@dataclass
class CallCommands:
    """The commands of one call's session. `base_prompt` is the agent's own prompt,
    which a context update extends (never the prompt of the last update)."""

    job: CallJob
    session: AgentSession
    agent: VoiceAgent
    base_prompt: str

    def listen(self, channel: ControlChannel) -> None:
        channel.on(UpdateContext, self.update_context)
        channel.on(Say, self.say)
        channel.on(SendDtmf, self.send_dtmf)
        channel.on(Transfer, self.transfer)

    async def update_context(self, message: UpdateContext) -> None:
        # the merged context is stored by the API; the agent's next LLM turn sees it in its instructions, with its
        # placeholders filled again from it
        prompt = fill(self.base_prompt, self.job.variables(message.context)) or ""
        await self.agent.update_instructions(prompt_with_context(prompt, message.context))
        log.info("session %s: context updated", self.job.session_id)

    async def say(self, message: Say) -> None:
        """An operator's words, now: the agent stops what it is saying and says them, uninterruptible."""
        text = message.text.strip()
        await self.session.interrupt(force=True)
        self.job.recorder.supervisor_texts.append(text)
        self.session.say(text, allow_interruptions=False)
        log.info("session %s: saying the supervisor's text", self.job.session_id)

    async def send_dtmf(self, message: SendDtmf) -> None:
        digit = message.digit
        room = self.job.ctx.room
        await room.local_participant.publish_dtmf(code=DTMF_CODES[digit], digit=digit)  # RFC 2833 on SIP
        log.info("session %s: sent DTMF %s", self.job.session_id, digit)

    async def transfer(self, message: Transfer) -> None:
        """A supervisor's transfer: cold (`transfer_caller`) or warm (worker/warm_transfer.py). A failed cold
        transfer leaves the call with the agent, with an `error` event (recoverable) on the session; a warm one
        that does not connect has its `transfer.declined` event, and the agent tells the caller."""
        session_id = self.job.session_id
        if message.mode == "warm":
            outcome = await warm_transfer(self.job, message.target)
            if not outcome.connected and not outcome.caller_gone and self.job.end.ended is None:
                # heard in full: the caller, back from hold, may be talking over it
                self.session.say(back_with_agent(outcome), allow_interruptions=False)
            return
        failure = await transfer_caller(self.job, message.target)
        if failure is not None:
            await self.job.store.write(
                lambda db: events_repo.emit_for_session(
                    db, session_id, "error", {"detail": failure, "stage": "transfer", "recoverable": True}
                )
            )


async def transfer_caller(job: CallJob, target: str) -> str | None:
    """The phone caller's side gets a REFER to `target` (a sip: or tel: URI); once it is done the call ends
    `transferred`. Returns why it failed (the call then stays with the agent), None once transferred."""
    session_id, caller = job.session_id, job.caller
    if caller is None:
        return "the callee has not answered yet"
    if caller.kind != rtc.ParticipantKind.PARTICIPANT_KIND_SIP:
        log.warning("session %s: ignored a transfer: the caller is not on a phone line", session_id)
        return "the caller is not on a phone line: only phone calls can be transferred"
    job.transferring = target
    failure = await transfer(job.ctx.api, room=job.ctx.room.name, identity=caller.identity, target=target)
    if failure is not None:
        job.transferring = None
        log.error("session %s: %s; the call stays with the agent", session_id, failure)
        return failure
    log.info("session %s: transferred to %s", session_id, target)
    await job.end(Ending("transferred"))
    return None
