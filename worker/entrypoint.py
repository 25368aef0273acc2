"""The job: one call. Resolves the agent from dispatch metadata, builds its pipeline, records the session live and
runs the post-call analysis. No HTTP and no pricing arithmetic here. Everything is importable at module level, as
the process executor requires."""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import json
import logging
import uuid
from dataclasses import dataclass, field
from typing import Any, Callable, Coroutine

from livekit import rtc
from livekit.agents import AgentSession, JobContext, JobProcess, utils
from livekit.agents.voice import room_io
from livekit.plugins import silero

from core.store.errors import NotFoundError
from core.control import DTMF_CODES, Say, SendDtmf, Transfer, UpdateContext
from core.livekit import sip_identity
from core.settings import Settings
from core.store import agents as agents_repo
from core.store import calls as calls_repo
from core.store import events as events_repo
from core.store import sessions as sessions_repo
from core.store.db import Store
from core.store.timefmt import now_iso
from pipelines.builder import VoiceAgent, build_llm, build_pipeline, build_session, vad_min_silence
from pipelines.config import (STT_SAMPLE_RATE, AgentSpec, ProviderConfigError,
                              prompt_with_context)
from pipelines.metering import CallMeter
from pipelines.pricing import PriceBook
from pipelines.providers import google as google_provider

from .analysis import run_and_store
from .config import BadDispatch, DispatchMeta, agent_spec, parse_dispatch, providers_config
from .control import ControlChannel
from .ending import CallEnd, Ending
from .inbound import InboundLine, admit, refuse_unassigned
from .outbound import DialOutcome, dial, transfer
from .recorder import SessionRecorder
from .turn_trace import TurnTrace
from .usage_sink import StoreUsageSink
from .usage_spill import spill_path

log = logging.getLogger("voxarena.job")

CALLER_JOIN_TIMEOUT = 60.0


@dataclass
class Call:
    settings: Settings
    store: Store
    meta: DispatchMeta
    session_id: str
    recorder: SessionRecorder
    spec: AgentSpec | None = None
    session: AgentSession | None = None
    meter: CallMeter | None = None
    meter_closed: bool = False
    line: InboundLine | None = None  # an inbound phone call's line, metered at the end
    caller_identity: str | None = None  # a phone call's SIP participant, hung up at the end
    transferring: str | None = None  # the target of a supervisor's transfer in flight or done
    tasks: set[asyncio.Task[Any]] = field(default_factory=set)
    end: CallEnd = field(init=False)  # the one way the call ends (worker/ending.py)

    def spawn(self, coro: Coroutine[Any, Any, Any], name: str) -> None:
        """Every task of the call is kept here, and awaited (or cancelled) when the job ends."""
        task = asyncio.get_running_loop().create_task(coro, name=f"{name}:{self.session_id}")
        self.tasks.add(task)
        task.add_done_callback(self._task_done)

    def _task_done(self, task: asyncio.Task[Any]) -> None:
        self.tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("session %s: task %s failed", self.session_id, task.get_name(), exc_info=task.exception())

    async def settle(self, timeout: float = 30.0) -> None:
        current = asyncio.current_task()
        pending = [t for t in self.tasks if t is not current]
        if not pending:
            return
        _, late = await asyncio.wait(pending, timeout=timeout)
        await utils.aio.cancel_and_wait(*late)

    async def close_meter(self) -> None:
        """The last usage (the plugins report it late) and the last audio, once; safe to call again."""
        if self.meter is None or self.meter_closed:
            return
        self.meter_closed = True
        try:
            await self.meter.close(self.session.usage.model_usage if self.session is not None else ())
        except Exception:
            log.exception("final metering of session %s failed", self.session_id)


def process_setup(settings: Settings) -> Callable[[JobProcess], None]:
    """The job processes' setup function, carrying the resolved settings with it: the executor pickles it to each
    new process, so settings (keys included) never pass through the environment every child would inherit."""
    return functools.partial(prewarm, settings)


def prewarm(settings: Settings, proc: JobProcess) -> None:
    """Once per job process, before a job arrives: settings, a store connection, the VAD weights, and what would
    otherwise block the loop of every job start (the TLS context, the Gemini client's first construction)."""
    proc.userdata["settings"] = settings
    proc.userdata["store"] = Store(settings.database_path, readers=2)
    proc.userdata["pricebook"] = PriceBook.load(settings.pricing_file or None)
    proc.userdata["vad"] = silero.VAD.load(min_silence_duration=vad_min_silence(settings.endpointing_min_delay))
    google_provider.prewarm()


async def entrypoint(ctx: JobContext) -> None:
    settings: Settings = ctx.proc.userdata["settings"]
    store: Store = ctx.proc.userdata["store"]
    try:
        meta = parse_dispatch(ctx.job.metadata, settings)  # refuses metadata the product did not sign
        if meta.refuse is not None:  # a registered number no agent is assigned to: no session, no agent
            await refuse_unassigned(ctx, store, meta)
            return
        row = await store.read(agents_repo.get_any_owner, meta.agent_id)
    except (BadDispatch, NotFoundError) as e:
        log.error("job %s refused: %s", ctx.job.id, e)
        ctx.shutdown(reason=str(e))
        return
    owner = row["owner_id"]
    if meta.owner_id and meta.owner_id != owner:
        log.error("job %s refused: agent %s does not belong to %s", ctx.job.id, meta.agent_id, meta.owner_id)
        ctx.shutdown(reason="agent owner mismatch")
        return
    session_id = meta.session_id or str(uuid.uuid4())
    inbound = None
    if meta.inbound_phone:  # a call to one of the tenant's numbers: admitted (or refused) once its caller is here
        inbound = await admit(ctx, store, meta, row)
        if inbound is None:
            return
        session_id = inbound.session_id

    def open_session(db: Any) -> dict[str, Any]:
        sessions_repo.create(db, owner_id=owner, agent_id=meta.agent_id, session_id=session_id,
                             room_name=ctx.room.name, direction=meta.direction, phone_number=meta.phone_number)
        # a session reserved by the token route starts now, when its call does (and only for the first job)
        sessions_repo.mark_active(db, session_id, job_id=ctx.job.id, started_at=now_iso())
        return sessions_repo.get_row(db, session_id)

    opened = await store.write(open_session)
    if opened["status"] != "active" or opened["job_id"] != ctx.job.id:
        # Too late: the call was given up (no agent picked it up in time, the room closed), or the job of an
        # earlier dispatch started it meanwhile. A job arriving now must neither revive it nor join it twice.
        why = "already ended" if opened["status"] == "ended" else f"already served by job {opened['job_id']}"
        log.warning("job %s refused: session %s %s", ctx.job.id, session_id, why)
        ctx.shutdown(reason=f"session {why}")
        return
    recorder = SessionRecorder(store, session_id, provider_key=ctx.proc.userdata["pricebook"].provider_key)
    recorder.start_heartbeat(min(60.0, settings.session_orphan_seconds / 4))
    call = Call(settings=settings, store=store, meta=meta, session_id=session_id, recorder=recorder,
                line=inbound.line if inbound is not None else None,
                caller_identity=sip_identity(meta.call_id) if meta.call_id is not None
                else inbound.caller.identity if inbound is not None else None)
    call.end = CallEnd(ctx, call)
    ctx.proc.userdata["call"] = call
    log.info("job %s: session %s for agent %s in room %s", ctx.job.id, session_id, meta.agent_id, ctx.room.name)

    if row["deleted_at"] is not None:
        await call.end(Ending("agent_deleted", f"agent {meta.agent_id} was deleted"))
        return
    call.spec = agent_spec(row)
    if opened.get("context"):  # the call's context (Phony): in the prompt from the first turn
        call.spec = dataclasses.replace(call.spec, system_prompt=prompt_with_context(
            call.spec.system_prompt, json.loads(opened["context"])))
    book = ctx.proc.userdata["pricebook"]
    meter = CallMeter(book, StoreUsageSink(store, spill_file=spill_path(settings.data_dir, ctx.job.id)),
                      owner_id=owner, session_id=session_id, agent_id=meta.agent_id,
                      key_scope=f"{session_id}/{ctx.job.id}")
    call.meter = meter
    http = utils.http_context.http_session()

    def metered_stt(provider: str) -> dict[str, Any]:
        # each STT provider's socket reports the audio it accepted: that, not what was sent its way, is billed
        return {"http_session": meter.stt_http_session(http, provider=provider, sample_rate=STT_SAMPLE_RATE)}

    def metered_tts(provider: str) -> dict[str, Any]:
        # likewise each TTS provider's sends report the characters they carried
        return {"wire": meter.tts_wire(http, provider=provider)}

    try:
        pipeline = build_pipeline(call.spec, providers_config(settings), vad_model=ctx.proc.userdata["vad"],
                                  stt_kwargs=metered_stt, tts_kwargs=metered_tts)
    except ProviderConfigError as e:
        await call.end(Ending("provider_error", str(e)))
        return

    await ctx.connect()
    if meta.call_id is not None:  # outbound: ring the number; the SIP outcome is the call's status
        if not meta.phone_number or not settings.sip_outbound_trunk_id:
            why = "Failed: no outbound SIP trunk or phone number is configured."
            await call.end(Ending("sip_not_configured", why, dial=DialOutcome("FAILED", "sip_not_configured")))
            return
        outcome = await dial(ctx.api, room=ctx.room.name, trunk_id=settings.sip_outbound_trunk_id,
                             phone_number=meta.phone_number, call_id=meta.call_id,
                             ring_timeout=settings.sip_ring_timeout_seconds,
                             max_call_seconds=settings.sip_max_call_seconds)
        if outcome.status != "ANSWERED":
            await call.end(Ending(outcome.end_reason or "dial_failed", outcome.detail, dial=outcome))
            return
        call_id = meta.call_id
        await call.store.write(lambda db: calls_repo.transition(db, call_id, "ANSWERED"))
    try:
        participant = await asyncio.wait_for(ctx.wait_for_participant(identity=call.caller_identity),
                                             CALLER_JOIN_TIMEOUT)
    except asyncio.TimeoutError:
        await call.end(Ending("caller_never_joined", f"the caller did not join within {CALLER_JOIN_TIMEOUT:.0f} s"))
        return

    session = build_session(pipeline, vad_model=ctx.proc.userdata["vad"], turn_detection=settings.turn_detection,
                            min_delay=settings.endpointing_min_delay, max_delay=settings.endpointing_max_delay)
    call.session = session
    recorder.providers = {"stt": pipeline.stt_providers, "llm": pipeline.llm_providers, "tts": pipeline.tts_providers}
    # a provider failed for good (its fallbacks too): the caller hears the apology, then the call hangs up
    recorder.on_fatal = lambda kind, message: call.spawn(call.end(Ending("error", message, failed_stage=kind)),
                                                         "end-failed")
    recorder.attach(session)
    TurnTrace(session_id).attach(session)
    session.on("session_usage_updated", lambda ev: meter.on_usage(ev.usage.model_usage))

    def on_close(ev: Any) -> None:
        reason, error = SessionRecorder.close_reason(ev)
        call.spawn(call.end(Ending(reason, error)), "end")

    session.on("close", on_close)
    agent = VoiceAgent(call.spec)
    recorder.clock = agent.clock
    base_prompt = agent_spec(row).system_prompt

    async def update_context(message: UpdateContext) -> None:
        # the merged context is stored by the API; the agent's next LLM turn sees it in its instructions
        await agent.update_instructions(prompt_with_context(base_prompt, message.context))
        log.info("session %s: context updated", session_id)

    async def say(message: Say) -> None:
        """An operator's words, now: the agent stops what it is saying and says them, uninterruptible."""
        text = message.text.strip()
        await session.interrupt(force=True)
        recorder.supervisor_texts.append(text)
        session.say(text, allow_interruptions=False)
        log.info("session %s: saying the supervisor's text", session_id)

    async def dtmf(message: SendDtmf) -> None:
        digit = message.digit
        await ctx.room.local_participant.publish_dtmf(code=DTMF_CODES[digit], digit=digit)  # RFC 2833 on SIP
        log.info("session %s: sent DTMF %s", session_id, digit)

    async def transfer_call(message: Transfer) -> None:
        """A supervisor's transfer: the caller's side gets a REFER; once it is done the call ends `transferred`."""
        target = message.target
        if participant.kind != rtc.ParticipantKind.PARTICIPANT_KIND_SIP:
            log.warning("session %s: ignored a transfer (no SIP caller or no target)", session_id)
            return
        call.transferring = target
        failure = await transfer(ctx.api, room=ctx.room.name, identity=participant.identity, target=target)
        if failure is not None:
            call.transferring = None
            log.error("session %s: %s; the call stays with the agent", session_id, failure)
            await store.write(lambda db: events_repo.emit_for_session(
                db, session_id, "error", {"detail": failure, "stage": "transfer", "recoverable": True}))
            return
        log.info("session %s: transferred to %s", session_id, target)
        await call.end(Ending("transferred"))

    control = ControlChannel(ctx.room, session_id, call.spawn)
    control.on(UpdateContext, update_context)
    control.on(Say, say)
    control.on(SendDtmf, dtmf)
    control.on(Transfer, transfer_call)
    await session.start(agent=agent, room=ctx.room, room_options=room_options(participant.identity))


def room_options(identity: str) -> room_io.RoomOptions:
    # The caller's audio arrives at the rate every STT here and the VAD take: WebRTC's decoder resamples once, where
    # at the framework's 24 kHz the STT and the VAD would each resample every frame again (bench/README.md, cores).
    return room_io.RoomOptions(participant_identity=identity, close_on_disconnect=True,
                               audio_input=room_io.AudioInputOptions(sample_rate=STT_SAMPLE_RATE))


async def on_session_end(ctx: JobContext) -> None:
    """After the session closed: make sure the row is ended, then analyse the call with the agent's own LLM."""
    call: Call | None = ctx.proc.userdata.get("call")
    if call is None:
        return
    await call.settle()
    await call.end(Ending("job_ended"))  # nothing when the call already ended
    if call.spec is None or call.session is None:  # no conversation: its analysis is already skipped
        return
    try:
        model, _ = build_llm(call.spec, providers_config(call.settings))
    except ProviderConfigError as e:
        reason = str(e)
        await call.store.write(lambda db: sessions_repo.store_analysis(db, call.session_id, result=None,
                                                                       error=reason, attempts=0))
        return
    await run_and_store(call.store, call.session_id, model, meter=call.meter)  # type: ignore[arg-type]
