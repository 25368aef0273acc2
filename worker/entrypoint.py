"""The job: one call, run as a `CallJob` in five phases.

1. `load`: the signed dispatch, its agent, the call's session opened (an inbound call's once its caller is admitted);
2. `build`: the agent's spec, the meter and the pipeline;
3. `connect`: the job joins the room, an outbound call dials its number, the caller is awaited;
4. `run`: the session built, recorded, metered, taking the API's commands, started with the caller;
5. `finish` (after the session closed): the call's tasks settled, its end made sure of, the post-call analysis.

A phase after `load` that will not go on raises `Refused` with the call's `Ending`, which goes to the one end path
(`worker/ending.py`, `CallJob.end`): the session says why, the log has it, the caller is hung up. Before the session
exists there is nothing to end: a job `load` refuses is logged and shut down with the reason.

No HTTP and no pricing arithmetic here. Everything is importable at module level, as the process executor requires;
`entrypoint` and `on_session_end` are what LiveKit calls."""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import json
import logging
import signal
import sys
import tempfile
import threading
import uuid
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any, TypeVar

from livekit import rtc
from livekit.agents import AgentSession, CloseReason, JobContext, JobProcess, utils
from livekit.agents.voice import room_io
from livekit.rtc._ffi_client import FfiClient  # private: rtc has no public "start the runtime"

from core.livekit import sip_identity
from core.netpolicy import NetPolicy
from core.pipeline import agent_config
from core.recordings import storage_for as recordings_storage
from core.secrets import SecretBox
from core.settings import Settings
from core.store import agents as agents_repo
from core.store import call_views
from core.store import calls as calls_repo
from core.store import events as events_repo
from core.store import sessions as sessions_repo
from core.store import tenants as tenants_repo
from core.store.db import Store
from core.store.errors import NotFoundError
from core.store.timefmt import now_iso
from core.tools import ToolRunner, agent_tools
from core.variables import call_values, fill
from core.webhooks import WebhookFailed, precall_context
from pipelines.builder import (
    Pipeline,
    TurnDefaults,
    VoiceAgent,
    build_llm,
    build_pipeline,
    build_session,
    call_vad,
    load_vad,
    prewarm_first_reply,
)
from pipelines.config import STT_SAMPLE_RATE, AgentSpec, ProviderConfigError, prompt_with_context
from pipelines.metering import CallMeter
from pipelines.pricing import PriceBook
from pipelines.providers import google as google_provider

from .analysis import run_and_store
from .audio_holes import AudioHoles
from .audio_holes import watch as watch_audio_holes
from .commands import CallCommands
from .config import BadDispatch, DispatchMeta, agent_spec, parse_dispatch, providers_config
from .control import ControlChannel
from .ending import CallEnd, Ending
from .inbound import CALL_STATUS, InboundLine, admit, refuse_unassigned
from .outbound import DialOutcome, dial
from .recorder import SessionRecorder
from .recording import CallRecording
from .tools import CallActions, function_tools
from .turn_trace import TurnTrace
from .usage_sink import StoreUsageSink
from .usage_spill import spill_path
from .voicemail import VoicemailScreen
from .warm_transfer import WarmTransfer

log = logging.getLogger("voxarena.job")


def _in_forkserver() -> bool:
    frame = sys._getframe()
    while frame is not None:
        if frame.f_globals.get("__name__") == "multiprocessing.forkserver":
            return True
        frame = frame.f_back  # type: ignore[assignment]
    return False


def _prepare_forkserver() -> None:
    """Imported into multiprocessing's forkserver (``preload_modules``), this module makes it ignore SIGTERM: a
    SIGTERM to the whole process group (systemd's default) would end the forkserver, and the worker then reads
    every job process forked from it as exited (code 255) and drops the calls it should be draining. The forkserver
    still ends with the worker (its pipe to the worker closes), and its children inherit the ignored SIGTERM.

    It also builds, once, what every call's first reply would otherwise build on its job's event loop (genai's
    models, its HTTP transports' imports, the TLS context, the first-reply imports, the hyphenation table): every job
    process forked from it shares them (LiveKit freezes the forkserver's objects after the preload, so a job
    process's garbage collector does not copy their pages)."""
    if not _in_forkserver():
        return
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    google_provider.prewarm()
    prewarm_first_reply()


_prepare_forkserver()

CALLER_JOIN_TIMEOUT = 60.0
# How long the end phase waits for the call's own tasks (an end in flight, a command) before it cancels them.
SETTLE_TIMEOUT = 30.0
JOB_KEY = "call_job"
T = TypeVar("T")  # the running CallJob in its process's userdata, for on_session_end


class Refused(Exception):
    """A phase will not go on: the call ends with `ending`, through the one end path."""

    def __init__(self, ending: Ending) -> None:
        super().__init__(ending.reason)
        self.ending = ending


@dataclass
class CallJob:
    """One call, run by one job: what its phases found and built (a field a phase fills is None before it), and
    the tasks it started. `end` is the one way the call ends (worker/ending.py); the first ending wins."""

    ctx: JobContext
    settings: Settings
    store: Store
    meta: DispatchMeta
    session_id: str
    recorder: SessionRecorder
    agent_row: dict[str, Any] = field(default_factory=dict)  # the stored agent, as `load` read it
    context: dict[str, Any] | None = None  # the call's context (Phony), stored with its session
    facts: dict[str, Any] = field(default_factory=dict)  # the call's numbers and direction (core/variables.py)
    tenant_recording: bool | None = None  # the tenant's recording default (None: the product's)
    spec: AgentSpec | None = None
    session: AgentSession | None = None
    agent: VoiceAgent | None = None  # the session's agent, told to stop replying as the call ends
    meter: CallMeter | None = None
    meter_closed: bool = False
    line: InboundLine | None = None  # an inbound phone call's line, metered at the end
    caller_identity: str | None = None  # a phone call's SIP participant, hung up at the end
    caller: rtc.RemoteParticipant | None = None  # once the caller is in the room (None: nobody answered or joined)
    transferring: str | None = None  # the target of a transfer in flight (cold) or done (cold, warm)
    warm_transfer: WarmTransfer | None = None  # a warm transfer under way, or connected (worker/warm_transfer.py)
    transfer_count: int = 0  # warm transfers started: each human leg is metered under its own number
    tool_runner: ToolRunner | None = None  # runs and records the agent's tools, when it has any
    recording: CallRecording | None = None  # the call's audio, when its agent (or the product) records calls
    audio_holes: AudioHoles | None = None  # where the room's audio source ran dry in a reply (logged at the end)
    tasks: utils.aio.TaskSet = field(default_factory=utils.aio.TaskSet)
    end: CallEnd = field(init=False)

    def __post_init__(self) -> None:
        self.end = CallEnd(self)

    @property
    def phone_call_id(self) -> str | None:
        """The outbound phone call this job dials (its row in `calls`); None for web and inbound calls."""
        return self.meta.call_id

    # ---- phase 1 ----

    @classmethod
    async def load(cls, ctx: JobContext) -> CallJob | None:
        """Load: the dispatch metadata (only as the product signed it), the agent it names, and the call's session
        opened and marked active for this job. An inbound call is first admitted by `worker/inbound.py`, which
        ends a refused one itself (the session says why, the caller is hung up), as it does a call to a number no
        agent is assigned to.

        Refuses metadata the product did not sign, an agent that is not stored or belongs to another tenant, and
        a session already ended or served by another job. No session is this job's then: the refusal is logged
        and the job shut down with it as the reason. Returns None when refused."""
        settings: Settings = ctx.proc.userdata["settings"]
        store: Store = ctx.proc.userdata["store"]
        try:
            meta = parse_dispatch(ctx.job.metadata, settings)  # refuses metadata the product did not sign
            if meta.refuse is not None:  # a registered number no agent is assigned to: no session, no agent
                await refuse_unassigned(ctx, store, meta)
                return None
            row = await store.read(agents_repo.get_any_owner, meta.agent_id)
        except (BadDispatch, NotFoundError) as e:
            log.error("job %s refused: %s", ctx.job.id, e)
            ctx.shutdown(reason=str(e))
            return None
        owner = row["owner_id"]
        if meta.owner_id and meta.owner_id != owner:
            log.error("job %s refused: agent %s does not belong to %s", ctx.job.id, meta.agent_id, meta.owner_id)
            ctx.shutdown(reason="agent owner mismatch")
            return None
        session_id = meta.session_id or str(uuid.uuid4())
        inbound = None
        if meta.inbound_phone:  # a call to one of the tenant's numbers: admitted (or refused) once its caller is here
            inbound = await admit(ctx, store, meta, row)
            if inbound is None:
                return None
            session_id = inbound.session_id

        def open_session(db: Any) -> dict[str, Any]:
            sessions_repo.create(
                db,
                owner_id=owner,
                agent_id=meta.agent_id,
                session_id=session_id,
                room_name=ctx.room.name,
                direction=meta.direction,
                phone_number=meta.phone_number,
            )
            # a session reserved by the token route starts now, when its call does (and only for the first job)
            sessions_repo.mark_active(db, session_id, job_id=ctx.job.id, started_at=now_iso(), node_id=settings.node_id)
            return {
                **sessions_repo.get_row(db, session_id),
                "tenant_recording": tenants_repo.recording_default(db, owner),
            }

        opened = await store.write(open_session)
        if opened["status"] != "active" or opened["job_id"] != ctx.job.id:
            # Too late: the call was given up (no agent picked it up in time, the room closed), or the job of an
            # earlier dispatch started it meanwhile. A job arriving now must neither revive it nor join it twice.
            why = "already ended" if opened["status"] == "ended" else f"already served by job {opened['job_id']}"
            log.warning("job %s refused: session %s %s", ctx.job.id, session_id, why)
            ctx.shutdown(reason=f"session {why}")
            return None
        recorder = SessionRecorder(store, session_id, provider_key=ctx.proc.userdata["pricebook"].provider_key)
        recorder.start_heartbeat(min(60.0, settings.session_orphan_seconds / 4))
        if meta.call_id is not None:  # outbound: the SIP participant the dial will add
            caller_identity: str | None = sip_identity(meta.call_id)
        else:
            caller_identity = inbound.caller.identity if inbound is not None else None
        job = cls(
            ctx=ctx,
            settings=settings,
            store=store,
            meta=meta,
            session_id=session_id,
            recorder=recorder,
            agent_row=row,
            context=json.loads(opened["context"]) if opened.get("context") else None,
            facts={
                "from_number": opened.get("from_number"),
                "to_number": opened.get("to_number") or opened.get("outbound_phone_number"),
                "direction": opened.get("direction"),
            },
            line=inbound.line if inbound is not None else None,
            caller_identity=caller_identity,
            tenant_recording=opened["tenant_recording"],
        )
        log.info("job %s: session %s for agent %s in room %s", ctx.job.id, session_id, meta.agent_id, ctx.room.name)
        return job

    async def start(self) -> None:
        """Build, connect and run, in order. A phase that refuses ends the call with its ending."""
        try:
            await self.precall_context()
            pipeline = self.build()
            # building the pipeline and the room's connect are each several ms of the job's loop at its busiest
            # moment: an iteration each (the loop monitor's blocks at job start were these stretches, summed)
            await asyncio.sleep(0)
            if self.screens_voicemail:  # the agent listens before the phone is answered: the first "Hello?" counts
                assert self.caller_identity is not None  # an outbound call's SIP participant
                await self.ctx.connect()
                await self.run(pipeline, self.caller_identity)
                await self.reach_caller()
            else:
                await self.connect()
                assert self.caller is not None
                await self.run(pipeline, self.caller.identity)
        except Refused as refused:
            await self.end(refused.ending)

    async def precall_context(self) -> None:
        """The agent's pre-call context webhook (``contextWebhookUrl``, core/webhooks.py), before anything else:
        the JSON object it answers with is merged into the call's context (and stored with the session, with a
        ``context.updated`` event). It is given `context_webhook_timeout_seconds`; a call whose webhook fails or is
        late goes on without it, and its session has an `error` event (recoverable) saying why."""
        url = agent_config(self.agent_row).get("contextWebhookUrl")
        if not url:
            return
        settings, owner, sid = self.settings, self.agent_row["owner_id"], self.session_id
        payload = {
            "event": "call.starting",
            "agent_id": self.meta.agent_id,
            "session_id": sid,
            "direction": self.facts.get("direction"),
            "from_number": self.facts.get("from_number"),
            "to_number": self.facts.get("to_number"),
            "context": self.context or {},
        }
        policy = NetPolicy.of(settings.outbound_http_allowed_hosts)
        deadline = settings.context_webhook_timeout_seconds
        try:
            async with asyncio.timeout(deadline):
                secret = await self.store.write(calls_repo.callback_secret, self.ctx.proc.userdata["secrets"], owner)
                async with policy.session() as http:
                    got = await precall_context(http, policy, url, payload, secret=secret, timeout=deadline)
            if got:
                row = await self.store.write(call_views.merge_context, owner, sid, got)
                self.context = row["context"]
            log.info("session %s: the context webhook gave %d keys", sid, len(got))
        except (TimeoutError, WebhookFailed) as e:
            why = (
                str(e) if isinstance(e, WebhookFailed) else f"the context webhook did not answer within {deadline:g} s"
            )
            log.warning("session %s: %s; the call goes on without it", sid, why)
            await self.store.write(
                lambda db: events_repo.emit_for_session(
                    db, sid, "error", {"detail": why, "stage": "context_webhook", "recoverable": True}
                )
            )

    # ---- phase 2 ----

    def build(self) -> Pipeline:
        """Build: the agent's spec (the call's context in its prompt from the first turn), the call's meter, and
        the pipeline, each STT and TTS provider metered on its own wire.

        Refuses a deleted agent (`agent_deleted`) and providers that are not configured (`provider_error`, with
        the provider's complaint): `Refused`, so the session ends with that reason and error."""
        row, meta = self.agent_row, self.meta
        if row["deleted_at"] is not None:
            raise Refused(Ending("agent_deleted", f"agent {meta.agent_id} was deleted"))
        spec = agent_spec(row)
        values = self.variables(self.context)
        spec = dataclasses.replace(
            spec,
            system_prompt=fill(spec.system_prompt, values) or "",
            first_message=fill(spec.first_message, values),
            recording=self.recorded(spec.recording),
        )
        if self.context:  # the call's context (Phony): in the prompt from the first turn
            spec = dataclasses.replace(spec, system_prompt=prompt_with_context(spec.system_prompt, self.context))
        self.spec = spec
        userdata = self.ctx.proc.userdata
        meter = self.meter = CallMeter(
            userdata["pricebook"],
            StoreUsageSink(self.store, spill_file=spill_path(self.settings.data_dir, self.ctx.job.id)),
            owner_id=row["owner_id"],
            session_id=self.session_id,
            agent_id=meta.agent_id,
            key_scope=f"{self.session_id}/{self.ctx.job.id}",
        )
        http = utils.http_context.http_session()

        def metered_stt(provider: str) -> dict[str, Any]:
            # each STT provider's socket reports the audio it accepted: that, not what was sent its way, is billed
            return {"http_session": meter.stt_http_session(http, provider=provider, sample_rate=STT_SAMPLE_RATE)}

        def metered_tts(provider: str) -> dict[str, Any]:
            # likewise each TTS provider's sends report the characters they carried
            return {"wire": meter.tts_wire(http, provider=provider)}

        try:
            return build_pipeline(
                spec,
                providers_config(self.settings),
                vad_model=userdata["vad"],
                stt_kwargs=metered_stt,
                tts_kwargs=metered_tts,
            )
        except ProviderConfigError as e:
            raise Refused(Ending("provider_error", str(e))) from e

    def variables(self, context: dict[str, Any] | None) -> dict[str, Any]:
        """What the agent's ``{{placeholders}}`` are filled from: the call's facts, the agent's own contextData as
        defaults, the call's context over them."""
        return call_values(context, agent=self.agent_row, session_id=self.session_id, **self.facts)

    # ---- phase 3 ----

    @property
    def screens_voicemail(self) -> bool:
        """An outbound phone call of an agent with voicemail detection on (worker/voicemail.py)."""
        return self.phone_call_id is not None and self.spec is not None and self.spec.voicemail is not None

    async def connect(self) -> None:
        """Connect: the job joins the room, then `reach_caller`."""
        await self.ctx.connect()
        await self.reach_caller()

    async def reach_caller(self) -> None:
        """An outbound call dials its number (`dial_out`); then the caller is awaited, for at most
        `CALLER_JOIN_TIMEOUT`, and kept as `caller`.

        Refuses a caller who never joins (`caller_never_joined`), and whatever `dial_out` refuses."""
        if self.phone_call_id is not None:
            await self.dial_out(self.phone_call_id)
        try:
            self.caller = await asyncio.wait_for(
                self.ctx.wait_for_participant(identity=self.caller_identity), CALLER_JOIN_TIMEOUT
            )
        except TimeoutError:
            raise Refused(
                Ending("caller_never_joined", f"the caller did not join within {CALLER_JOIN_TIMEOUT:.0f} s")
            ) from None

    async def dial_out(self, phone_call_id: str) -> None:
        """Rings the outbound phone call's number through the outbound trunk and marks it ANSWERED when it is; the
        SIP outcome is the phone call's status (worker/outbound.py).

        Refuses a call with no outbound trunk or number configured (`sip_not_configured`) and a dial not answered
        (`busy`, `declined`, `no_answer`, `sip_<code>`, ...): the ending carries the dial's outcome, which the end
        path records on the phone call, and a sentence for the session's error."""
        settings, number = self.settings, self.meta.phone_number
        if not number or not settings.sip_outbound_trunk_id:
            why = "Failed: no outbound SIP trunk or phone number is configured."
            raise Refused(Ending("sip_not_configured", why, dial=DialOutcome("FAILED", "sip_not_configured")))
        outcome = await dial(
            self.ctx.api,
            room=self.ctx.room.name,
            trunk_id=settings.sip_outbound_trunk_id,
            phone_number=number,
            call_id=phone_call_id,
            ring_timeout=settings.sip_ring_timeout_seconds,
            max_call_seconds=settings.sip_max_call_seconds,
        )
        if outcome.status != "ANSWERED":
            raise Refused(Ending(outcome.end_reason or "dial_failed", outcome.detail, dial=outcome))
        await self.store.write(lambda db: calls_repo.transition(db, phone_call_id, "ANSWERED"))

    # ---- phase 4 ----

    async def run(self, pipeline: Pipeline, caller_identity: str) -> None:
        """Run: the session on the pipeline, recorded live (transcript, errors), metered, traced, taking the API's
        commands on the control channel, and started with the caller's identity (usually once the caller is in the
        room; with voicemail detection, before the phone rings: worker/voicemail.py).

        Refuses nothing. How it ends: a provider failing for good ends the call `error` (after the agent's
        apology); the session closing ends it with the session's reason. Both go through the end path, in a task
        the job owns."""
        assert self.spec is not None and self.meter is not None  # `build` made them
        settings, recorder, meter = self.settings, self.recorder, self.meter
        defaults, turn = turn_defaults(settings), self.spec.turn_taking
        vad = call_vad(self.ctx.proc.userdata["vad"], defaults.min_delay_for(turn))
        session = self.session = build_session(pipeline, vad_model=vad, defaults=defaults, turn=turn)
        recorder.providers = {
            "stt": pipeline.stt_providers,
            "llm": pipeline.llm_providers,
            "tts": pipeline.tts_providers,
        }
        # a provider failed for good (its fallbacks too): the caller hears the apology, then the call hangs up
        recorder.on_fatal = lambda kind, message: self.spawn(
            self.end(Ending("error", message, failed_stage=kind)), "end-failed"
        )
        recorder.attach(session)
        TurnTrace(self.session_id).attach(session)
        session.on("session_usage_updated", lambda ev: meter.on_usage(ev.usage.model_usage))
        session.on("close", self._on_session_close)
        self.ctx.room.on("participant_attributes_changed", self._on_line_status)
        voicemail = self.spec.voicemail if self.screens_voicemail else None
        screen = VoicemailScreen(self, voicemail, caller_identity) if voicemail is not None else None
        if self.spec.recording:
            self.recording = CallRecording(
                self.store,
                recordings_storage(settings),
                owner_id=self.agent_row["owner_id"],
                session_id=self.session_id,
            )
        agent = VoiceAgent(
            self.spec,
            tools=self.tools(),
            before_first_word=screen.start if screen is not None else None,
            audio_ready=self.recording.attach if self.recording is not None else None,
        )
        self.agent = agent
        recorder.clock = agent.clock
        # building the session and the agent, then starting it: an iteration each (the control channel begins
        # listening in the iteration the session starts in)
        await asyncio.sleep(0)
        commands = CallCommands(self, session, agent, base_prompt=agent_spec(self.agent_row).system_prompt)
        commands.listen(ControlChannel(self.ctx.room, self.session_id, self.spawn))
        options = room_options(caller_identity, settings, output_rate=pipeline.tts.sample_rate)
        # No LiveKit session host: it would send every session event (each interim transcript, the tool calls with
        # their arguments and results, the usage) to every participant of the room, and answer any participant's
        # requests for the agent's instructions and the chat history, or run text input as the caller's turn. The
        # caller is a participant; the product's own API and event stream carry all of it to the owner.
        await session.start(agent=agent, room=self.ctx.room, room_options=options, session_host=False)
        self.audio_holes = watch_audio_holes(session)

    def recorded(self, agent_says: bool | None) -> bool:
        """Whether the call is recorded: the agent's own choice, else its tenant's default, else the product's."""
        for choice in (agent_says, self.tenant_recording):
            if choice is not None:
                return choice
        return self.settings.recording_default

    def tools(self) -> list[Any]:
        """The agent's tools (core/tools.py) as the LLM's function tools, run and recorded by the call's runner."""
        tools = agent_tools(agent_config(self.agent_row))
        if not tools:
            return []
        userdata = self.ctx.proc.userdata
        self.tool_runner = ToolRunner(
            self.store,
            NetPolicy.of(self.settings.outbound_http_allowed_hosts),
            userdata["secrets"],
            owner_id=self.agent_row["owner_id"],
            session_id=self.session_id,
        )
        return function_tools(tools, self.tool_runner, CallActions(self))

    def _on_session_close(self, ev: Any) -> None:
        reason, error = SessionRecorder.close_reason(ev)
        if reason == "user_initiated" and self.ctx.room.isconnected():
            # the product never closes a session before its end is recorded: LiveKit's job process closes it so
            # (`AgentSession.aclose`) when the job is shut down from outside with the room still up, i.e. the
            # worker stopped with the call in progress (its drain timed out). The caller was cut off: a failure.
            reason = "worker_shutdown"
            error = "the worker shut down with the call in progress"
            log.warning("session %s: %s; the caller is hung up", self.session_id, error)
        if self.caller is None and self.phone_call_id is not None and error is None:
            # voicemail detection's session runs while the phone rings: a callee who leaves without answering
            # (busy, declined, no answer) is the dial's outcome, which ends the call with what the far end said
            log.info("session %s: the session closed (%s) before the callee answered", self.session_id, reason)
            return
        self.spawn(self.end(Ending(reason, error)), "end")

    def _on_line_status(self, changed: dict[str, str], participant: rtc.Participant) -> None:
        """A phone caller who hangs up: livekit-sip marks their line `hangup` on the BYE, then leaves the room.
        LiveKit has been seen (on the SIP tier, with several calls ending at once) to lose that leave: livekit-sip
        closed its signalling socket before the leave was read, and LiveKit kept the participant through its
        reconnect window while the agent talked on (a call being drained then ran out the drain and was recorded
        `worker_shutdown`). The status is the hang-up's first word, the leave its fallback: either closes the
        session as LiveKit's RoomIO does when the caller leaves (its `_close_soon`, private, once whichever comes
        first), so the call ends the same way (the caller's last words flushed, then the end path from the
        session's close)."""
        caller, session = self.caller, self.session
        if caller is None or session is None or participant.identity != caller.identity:
            return
        if changed.get(CALL_STATUS) != "hangup" or participant.kind != rtc.ParticipantKind.PARTICIPANT_KIND_SIP:
            return  # only livekit-sip speaks for a line
        log.info("session %s: the caller hung up (their line is marked hangup)", self.session_id)
        session._close_soon(reason=CloseReason.PARTICIPANT_DISCONNECTED)

    # ---- phase 5 ----

    async def finish(self) -> None:
        """End, after the session closed (LiveKit's `on_session_end`): the call's tasks settle (an end in flight, a
        command), the call is ended if nothing ended it yet (`job_ended`), then the post-call analysis runs with
        the agent's own LLM. A call with no conversation has its analysis skipped by the end path already.

        Fails visibly: an LLM that cannot be built is stored as the analysis's error (0 attempts); the analysis's
        own failures are stored by `run_and_store`."""
        await self.settle()
        await self.end(Ending("job_ended"))  # nothing when the call already ended
        if self.audio_holes is not None:
            self.audio_holes.report(self.session_id)
        if self.tool_runner is not None:
            await self.tool_runner.aclose()
        if self.spec is None or self.session is None or self.caller is None:  # no conversation: already skipped
            return
        try:
            model, _ = build_llm(self.spec, providers_config(self.settings))
        except ProviderConfigError as e:
            reason, session_id = str(e), self.session_id
            await self.store.write(
                lambda db: sessions_repo.store_analysis(db, session_id, result=None, error=reason, attempts=0)
            )
            return
        await run_and_store(self.store, self.session_id, model, meter=self.meter)

    # ---- what the phases share ----

    def spawn(self, coro: Coroutine[Any, Any, T], name: str) -> asyncio.Task[T]:
        """A task of the call: owned by the job's task set, awaited (or cancelled) by `settle`; a failure is
        logged with the task's name."""
        task = self.tasks.create_task(coro, name=f"{name}:{self.session_id}")
        task.add_done_callback(self._task_done)
        return task

    def _task_done(self, task: asyncio.Task[Any]) -> None:
        if not task.cancelled() and task.exception() is not None:
            log.error("session %s: task %s failed", self.session_id, task.get_name(), exc_info=task.exception())

    async def settle(self) -> None:
        """Waits for the call's tasks (but the one calling) for up to `SETTLE_TIMEOUT`, then cancels the rest."""
        pending = self.tasks.tasks - {asyncio.current_task()}
        if not pending:
            return
        _, late = await asyncio.wait(pending, timeout=SETTLE_TIMEOUT)
        if late:
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


def room_options(identity: str, settings: Settings, *, output_rate: int = 24_000) -> room_io.RoomOptions:
    """The caller's audio arrives at the rate every STT here and the VAD take: WebRTC's decoder resamples once, where
    at the framework's 24 kHz the STT and the VAD would each resample every frame again (bench/README.md, cores).
    The agent's audio is published at its TTS's own rate (`output_rate`): no resampling of every frame in Python
    (and its delay) before WebRTC's encoder, which resamples anyway."""
    return room_io.RoomOptions(
        participant_identity=identity,
        close_on_disconnect=True,
        audio_input=room_io.AudioInputOptions(
            sample_rate=STT_SAMPLE_RATE,
            frame_size_ms=settings.audio_input_frame_ms,
            auto_gain_control=settings.auto_gain_control,
        ),
        audio_output=room_io.AudioOutputOptions(sample_rate=output_rate),
    )


def turn_defaults(settings: Settings) -> TurnDefaults:
    return TurnDefaults(
        mode=settings.turn_detection,
        min_delay=settings.endpointing_min_delay,
        max_delay=settings.endpointing_max_delay,
        preemptive_generation=settings.preemptive_generation,
    )


def process_setup(settings: Settings) -> Callable[[JobProcess], None]:
    """The job processes' setup function, carrying the resolved settings with it: the executor pickles it to each
    new process, so settings (keys included) never pass through the environment every child would inherit."""
    return functools.partial(prewarm, settings)


_RESOURCES: dict[Settings, dict[str, Any]] = {}
_RESOURCES_LOCK = threading.Lock()


def _process_resources(settings: Settings) -> dict[str, Any]:
    """What every job of a process shares: the store (its thread-safe API serves any job thread's loop), the secret
    box, the price book and the VAD model (each call streams from it with its own state). Built by the first job's
    prewarm; the later job threads of a `hosted` or `thread` process reuse it instead of another ~20 MB (the onnx
    session above all) and ~0.1 s of CPU each."""
    with _RESOURCES_LOCK:
        if settings not in _RESOURCES:
            _RESOURCES[settings] = {
                "store": Store(settings.database_target, readers=2),
                "secrets": SecretBox.from_settings(settings.secret_key, settings.data_dir),  # tools' headers
                "pricebook": PriceBook.load(settings.pricing_file or None),
                "vad": load_vad(settings.vad_engine, settings.endpointing_min_delay, inline=settings.vad_inline),
            }
        return _RESOURCES[settings]


def prewarm(settings: Settings, proc: JobProcess) -> None:
    """Once per job process, before a job arrives: settings, a store connection, the VAD weights, and what would
    otherwise block the loop of every job start (the TLS context, the Gemini client's first construction)."""
    if settings.job_executor == "process" and threading.current_thread() is threading.main_thread():
        # A job process outlives a SIGTERM or Ctrl-C sent to the whole process group (systemd's default, a terminal):
        # the worker drains it. LiveKit's job main ignores both only when it is imported in the job process itself;
        # under the forkserver it was imported there already, so the job processes kept the default (death).
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        signal.signal(signal.SIGINT, signal.SIG_IGN)
    proc.userdata["settings"] = settings
    proc.userdata.update(_process_resources(settings))
    google_provider.prewarm()
    prewarm_first_reply()
    # LiveKit's JobContext makes a temporary directory for every job; the process's first finds the temp dir by
    # writing a file in each candidate, on the job's loop (a 197 ms block of a job start, seen on the SIP tier)
    tempfile.gettempdir()
    # LiveKit's native runtime: loaded and started here rather than by the call's room connect, on the job's loop
    # (2-5 ms and ~500 page faults of a job start's longest iteration). Never in the forkserver: it cannot cross a
    # fork (its client checks the pid); a job process is forked before its prewarm.
    FfiClient.instance  # noqa: B018 (a class property that starts it)


async def entrypoint(ctx: JobContext) -> None:
    """LiveKit's entry for a job: the call loaded, then built, connected and run (`CallJob`)."""
    job = await CallJob.load(ctx)
    if job is not None:
        ctx.proc.userdata[JOB_KEY] = job
        await job.start()


async def on_session_end(ctx: JobContext) -> None:
    """LiveKit's hook once the job's session closed: the call's end phase."""
    job: CallJob | None = ctx.proc.userdata.get(JOB_KEY)
    if job is not None:
        await job.finish()
