"""The job: one call. Resolves the agent from dispatch metadata, builds its pipeline, records the session live and
runs the post-call analysis. No HTTP and no pricing arithmetic here. Everything is importable at module level, as
the process executor requires."""

from __future__ import annotations

import asyncio
import logging
import uuid
from dataclasses import dataclass
from typing import Any

from livekit.agents import AgentSession, JobContext, JobProcess
from livekit.agents.voice import room_io
from livekit.plugins import silero

from api.errors import NotFound
from api.settings import Settings
from api.store import agents as agents_repo
from api.store import sessions as sessions_repo
from api.store.db import Store
from api.store.timefmt import now_iso
from pipelines.builder import VoiceAgent, build_pipeline, build_session
from pipelines.config import AgentSpec, ProviderConfigError
from pipelines.metering import CallMeter
from pipelines.pricing import PriceBook
from pipelines.registry import builder

from .analysis import run_and_store
from .config import BadDispatch, DispatchMeta, agent_spec, providers_config
from .recorder import SessionRecorder
from .usage_sink import StoreUsageSink

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


def prewarm(proc: JobProcess) -> None:
    """Once per job process, before a job arrives: settings, a store connection, the VAD weights."""
    settings = Settings.from_env()
    proc.userdata["settings"] = settings
    proc.userdata["store"] = Store(settings.database_path, readers=2)
    proc.userdata["pricebook"] = PriceBook.load(settings.pricing_file or None)
    proc.userdata["vad"] = silero.VAD.load()


async def entrypoint(ctx: JobContext) -> None:
    settings: Settings = ctx.proc.userdata["settings"]
    store: Store = ctx.proc.userdata["store"]
    try:
        meta = DispatchMeta.parse(ctx.job.metadata)
        row = await store.read(agents_repo.get_any_owner, meta.agent_id)
    except (BadDispatch, NotFound) as e:
        log.error("job %s refused: %s", ctx.job.id, e)
        ctx.shutdown(reason=str(e))
        return
    owner = row["owner_id"]
    if meta.owner_id and meta.owner_id != owner:
        log.error("job %s refused: agent %s does not belong to %s", ctx.job.id, meta.agent_id, meta.owner_id)
        ctx.shutdown(reason="agent owner mismatch")
        return
    session_id = meta.session_id or str(uuid.uuid4())

    def open_session(db: Any) -> None:
        sessions_repo.create(db, owner_id=owner, agent_id=meta.agent_id, session_id=session_id,
                             room_name=ctx.room.name, direction=meta.direction, phone_number=meta.phone_number)
        # a session reserved by the token route starts now, when its call does
        sessions_repo.mark_active(db, session_id, job_id=ctx.job.id, started_at=now_iso())

    await store.write(open_session)
    recorder = SessionRecorder(store, session_id)
    recorder.start_heartbeat(min(60.0, settings.session_orphan_seconds / 4))
    call = Call(settings=settings, store=store, meta=meta, session_id=session_id, recorder=recorder)
    ctx.proc.userdata["call"] = call
    log.info("job %s: session %s for agent %s in room %s", ctx.job.id, session_id, meta.agent_id, ctx.room.name)

    if row["deleted_at"] is not None:
        await _fail(ctx, call, "agent_deleted", f"agent {meta.agent_id} was deleted")
        return
    call.spec = agent_spec(row)
    try:
        pipeline = build_pipeline(call.spec, providers_config(settings))
    except ProviderConfigError as e:
        await _fail(ctx, call, "provider_error", str(e))
        return

    await ctx.connect()
    try:
        participant = await asyncio.wait_for(ctx.wait_for_participant(), CALLER_JOIN_TIMEOUT)
    except asyncio.TimeoutError:
        await _fail(ctx, call, "caller_never_joined", None)
        return

    session = build_session(pipeline, vad_model=ctx.proc.userdata["vad"], turn_detection=settings.turn_detection,
                            min_delay=settings.endpointing_min_delay, max_delay=settings.endpointing_max_delay)
    call.session = session
    recorder.attach(session)
    meter = CallMeter(ctx.proc.userdata["pricebook"], StoreUsageSink(store), owner_id=owner,
                      session_id=session_id, agent_id=meta.agent_id, stt_provider=call.spec.stt_provider,
                      stt_model=getattr(pipeline.stt, "model", None), key_scope=f"{session_id}/{ctx.job.id}")
    call.meter = meter
    session.on("session_usage_updated", lambda ev: meter.on_usage(ev.usage.model_usage))

    def on_close(ev: Any) -> None:
        reason, error = SessionRecorder.close_reason(ev)
        asyncio.ensure_future(_finish(ctx, call, reason, error))

    session.on("close", on_close)
    await session.start(
        agent=VoiceAgent(call.spec, stt_audio_tap=meter.on_stt_audio),
        room=ctx.room,
        room_options=room_io.RoomOptions(participant_identity=participant.identity, close_on_disconnect=True),
    )


async def _fail(ctx: JobContext, call: Call, reason: str, error: str | None) -> None:
    log.error("session %s ends: %s%s", call.session_id, reason, f" ({error})" if error else "")
    await _finish(ctx, call, reason, error)


async def _finish(ctx: JobContext, call: Call, reason: str, error: str | None) -> None:
    await call.recorder.end(reason=reason, error=error)
    await _close_meter(call)
    ctx.shutdown(reason=reason)


async def _close_meter(call: Call) -> None:
    """The last usage (the plugins report it late) and the last audio, once; safe to call again."""
    if call.meter is None or call.session is None or call.meter_closed:
        return
    call.meter_closed = True
    try:
        await call.meter.close(call.session.usage.model_usage)
    except Exception:
        log.exception("final metering of session %s failed", call.session_id)


async def on_session_end(ctx: JobContext) -> None:
    """After the session closed: make sure the row is ended, then analyse the call with the agent's own LLM."""
    call: Call | None = ctx.proc.userdata.get("call")
    if call is None:
        return
    await call.recorder.end(reason="job_ended")
    await _close_meter(call)
    if call.spec is None or call.session is None:
        return
    try:
        model = builder("llm", call.spec.llm_provider)(call.spec, providers_config(call.settings))
    except ProviderConfigError as e:
        reason = str(e)
        await call.store.write(lambda db: sessions_repo.store_analysis(db, call.session_id, result=None,
                                                                       error=reason, attempts=0))
        return
    await run_and_store(call.store, call.session_id, model, meter=call.meter)  # type: ignore[arg-type]
