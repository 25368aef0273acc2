"""The job's one end path (worker/ending.py) on a real SQLite file: it hangs up before it records the end, records
it once however many ways end the call at the same time, skips the analysis of a call never answered, says in
words why a dial failed, and leaves the agent answering nothing more (no LLM request) once the call has ended."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace
from typing import Any

import pytest
from livekit import api, rtc
from livekit.agents import CloseReason, StopResponse, llm
from livekit.agents.utils import http_context
from livekit.plugins import silero

from core.settings import Settings
from core.store import calls as calls_repo
from core.store import sessions as sessions_repo
from core.store.db import Store
from pipelines.builder import TurnDefaults, VoiceAgent, build_pipeline, build_session
from tests.api.seed import tenant_of
from tests.fakes import FakeProviders
from tests.harness.sip import eventually
from tests.test_call_endings import PHONE, _placed
from tests.test_deepgram_endpoint import _config
from tests.test_job_start_loop import SPEC
from tests.test_stt_refused import Silence
from worker.config import DispatchMeta
from worker.ending import CallEnd, Ending
from worker.entrypoint import CallJob
from worker.outbound import classify
from worker.recorder import SessionRecorder


def test_a_dial_failure_is_a_sentence_with_its_sip_code():
    def detail(code, twirp="unknown", status=500):
        meta = {"sip_status_code": str(code)} if code else {}
        return classify(
            api.TwirpError(twirp, "twirp error unknown: sip status: 480", status=status, metadata=meta), ring_timeout=30
        ).detail

    assert detail(480) == "No answer: the callee did not pick up within 30 s (SIP 480)."
    assert detail(None, "canceled", 408) == "No answer: the callee did not pick up within 30 s."
    assert detail(486, "resource_exhausted", 429) == "Busy: the callee's line was busy (SIP 486)."
    assert detail(603) == "Declined: the callee declined the call (SIP 603)."
    assert "twirp" not in detail(404) and "(SIP 404)" in detail(404)


class _FakeJob:
    """What the end path uses of LiveKit's JobContext: the room's name, its API, shutdown. Records the order."""

    def __init__(self, store: Store, sid: str) -> None:
        self.store, self.sid = store, sid
        self.steps: list[tuple[str, Any]] = []
        self.job = SimpleNamespace(room=SimpleNamespace(name="vx-out-1"))
        self.api = SimpleNamespace(room=SimpleNamespace(remove_participant=self._remove, delete_room=self._delete))

    async def _remove(self, req: api.RoomParticipantIdentity) -> None:
        self.steps.append(("remove", (req.room, req.identity)))

    async def _delete(self, req: api.DeleteRoomRequest) -> None:
        ended = self.store.read_sync(sessions_repo.get_row, self.sid)["ended_at"]
        self.steps.append(("delete", (req.room, "recorded" if ended else None)))

    def shutdown(self, reason: str = "") -> None:
        self.steps.append(("shutdown", reason))


def _job(
    ctx: _FakeJob,
    settings: Settings,
    store: Store,
    sid: str,
    row: dict[str, Any],
    meta: DispatchMeta,
    caller_identity: str | None = None,
) -> CallJob:
    return CallJob(
        ctx=ctx,
        settings=settings,
        store=store,
        meta=meta,
        session_id=sid,  # type: ignore[arg-type]
        recorder=SessionRecorder(store, sid),
        agent_row=row,
        caller_identity=caller_identity,
    )


async def test_a_call_never_answered_is_hung_up_recorded_once_and_not_analysed(tmp_path, settings):
    store, sid, call_id = _placed(tmp_path)
    try:
        store.write_sync(lambda db: sessions_repo.mark_active(db, sid, job_id="AJ_1"))
        meta = DispatchMeta(
            agent_id="a",
            session_id=sid,
            owner_id=tenant_of("alice"),
            direction="outbound",
            phone_number=PHONE,
            call_id=call_id,
        )
        ctx = _FakeJob(store, sid)
        job = _job(ctx, settings, store, sid, {}, meta, caller_identity="sip-call_1")
        end = CallEnd(job)
        outcome = classify(
            api.TwirpError("unknown", "x", status=480, metadata={"sip_status_code": "480"}), ring_timeout=30
        )
        await asyncio.gather(end(Ending("no_answer", outcome.detail, dial=outcome)), end(Ending("job_ended")))
        # the end recorded before the hang-up (LiveKit's room_finished then changes nothing), once; the job shut
        # down with the reason
        assert ctx.steps == [
            ("remove", ("vx-out-1", "sip-call_1")),
            ("delete", ("vx-out-1", "recorded")),
            ("shutdown", "no_answer"),
        ]
        session = store.read_sync(lambda db: sessions_repo.get(db, tenant_of("alice"), sid))
        call_row = store.read_sync(calls_repo.get_any, call_id)
        assert (call_row["status"], call_row["sip_status_code"], session["end_reason"]) == (
            "NO_ANSWER",
            480,
            "no_answer",
        )
        assert session["error"] == "No answer: the callee did not pick up within 30 s (SIP 480)."
        analysis = session["analysis_row"]
        assert analysis["status"] == "skipped" and "never answered" in analysis["error"], analysis
    finally:
        store.close()


async def test_words_kept_at_the_end_are_not_recorded_twice_when_the_framework_commits_them_late(tmp_path):
    from livekit.agents.llm import ChatMessage
    from livekit.agents.voice.events import ConversationItemAddedEvent, UserInputTranscribedEvent

    store, sid, _ = _placed(tmp_path)
    try:
        store.write_sync(lambda db: sessions_repo.mark_active(db, sid, job_id="AJ_1"))
        rec = SessionRecorder(store, sid)
        rec._on_transcribed(UserInputTranscribedEvent(transcript="What are your opening hours?", is_final=True))
        await rec.close()  # the reply failed: the caller's words are kept
        late = ChatMessage(role="user", content=["What are your opening hours?"])
        rec._on_item(ConversationItemAddedEvent(item=late))  # the framework commits the same turn as it closes
        await rec.flush()
        said = [(t["speaker"], t["content"]) for t in store.read_sync(sessions_repo.items_for, sid)]
        assert said == [("USER", "What are your opening hours?")]
    finally:
        store.close()


async def test_after_the_end_the_agent_answers_nothing_not_even_the_tool_that_ended_the_call(
    tmp_path, settings, monkeypatch
):
    """A cold transfer ends the call while its tool runs (the caller's side leaves as the REFER completes); LiveKit
    then asks the LLM for the tool's follow-up reply, and an STT final of audio already sent can still start a turn.
    Through the real session, agent and Gemini plugin against the Gemini fake: after the one end path has run, no
    LLM request is made, and a turn heard then gets no reply (one such request, from the call before, took the next
    test's scripted tool call on the SIP tier)."""
    store, sid, _ = _placed(tmp_path)
    ctx = _FakeJob(store, sid)
    job = _job(
        ctx,
        settings,
        store,
        sid,
        {},
        DispatchMeta(agent_id="a", session_id=sid, owner_id=tenant_of("alice"), direction="outbound"),
        caller_identity="sip-call_1",
    )
    end = CallEnd(job)
    ran: list[str] = []

    @llm.function_tool
    async def transfer_call(reason: str) -> str:
        """Transfer the caller to a person."""
        ran.append(reason)
        await end(Ending("transferred"))  # as the caller's side leaves during the REFER
        return "Transferred."

    try:
        async with FakeProviders(api_key="k") as fakes:
            monkeypatch.setenv("GOOGLE_GEMINI_BASE_URL", fakes.gemini_base_url)
            fakes.update_script(llm_tool_calls=[{"name": "transfer_call", "args": {"reason": "a person"}}])
            async with http_context.open():
                vad = silero.VAD.load()
                pipeline = build_pipeline(SPEC, _config(fakes), vad_model=vad)
                session = build_session(pipeline, vad_model=vad, defaults=TurnDefaults(mode="vad"))
                session.input.audio = Silence()
                job.agent = agent = VoiceAgent(SPEC, tools=[transfer_call])
                await session.start(agent)
                try:
                    turn = session.generate_reply(user_input="Can I talk to a person?")
                    await asyncio.wait_for(turn.wait_for_playout(), 20)
                    assert ran == ["a person"] and ctx.steps[-1] == ("shutdown", "transferred"), ctx.steps
                    # LiveKit's follow-up to the tool's result is its own speech: wait until the agent is idle
                    await eventually(lambda: session.current_speech is None, timeout=10, what="the follow-up finished")
                    late = session.generate_reply(user_input="Hello? Are you still there?")
                    await asyncio.wait_for(late.wait_for_playout(), 20)
                    c = fakes.counters()["gemini"]
                    # the transfer's own request only: neither the tool's follow-up nor the late turn reached it
                    assert (c["requests"], c["function_calls"]) == (1, 1), c
                    # a turn the STT finishes after the end is not answered either
                    with pytest.raises(StopResponse):
                        await agent.on_user_turn_completed(llm.ChatContext(), llm.ChatMessage(role="user", content=[]))
                finally:
                    await session.aclose()
    finally:
        store.close()


async def test_a_phone_caller_whose_line_says_hangup_ends_the_call_as_one_who_left(tmp_path, settings, monkeypatch):
    """livekit-sip marks the caller's line `hangup` on their BYE, then leaves; LiveKit was seen to lose that leave
    (the call ran on until a drain gave up). Through the real session (Gemini plugin against the fake): the status
    alone closes it as the caller's leave does, and the call ends through the one end path from that close; the
    same status from anyone else, from a participant that is not a phone line, or before the answer ends nothing."""
    store, sid, call_id = _placed(tmp_path)
    store.write_sync(lambda db: sessions_repo.mark_active(db, sid, job_id="AJ_1"))
    store.write_sync(lambda db: calls_repo.transition(db, call_id, "ANSWERED"))
    ctx = _FakeJob(store, sid)
    meta = DispatchMeta(
        agent_id="a", session_id=sid, owner_id=tenant_of("alice"), direction="outbound", call_id=call_id
    )
    job = _job(ctx, settings, store, sid, {}, meta, caller_identity="sip-call_1")
    sip, web = rtc.ParticipantKind.PARTICIPANT_KIND_SIP, rtc.ParticipantKind.PARTICIPANT_KIND_STANDARD
    caller = SimpleNamespace(identity="sip-call_1", kind=sip)
    try:
        async with FakeProviders(api_key="k") as fakes:
            monkeypatch.setenv("GOOGLE_GEMINI_BASE_URL", fakes.gemini_base_url)
            async with http_context.open():
                vad = silero.VAD.load()
                pipeline = build_pipeline(SPEC, _config(fakes), vad_model=vad)
                session = job.session = build_session(pipeline, vad_model=vad, defaults=TurnDefaults(mode="vad"))
                session.input.audio = Silence()
                session.on("close", job._on_session_close)
                await session.start(VoiceAgent(SPEC))
                closes: list[CloseReason] = []
                close_soon = session._close_soon

                def recorded_close(**kw: Any) -> None:  # the handler's one call is synchronous
                    closes.append(kw["reason"])
                    close_soon(**kw)

                monkeypatch.setattr(session, "_close_soon", recorded_close)
                try:
                    job._on_line_status({"sip.callStatus": "hangup"}, caller)  # before the answer: the dial decides
                    job.caller = caller  # type: ignore[assignment]
                    job._on_line_status({"sip.callStatus": "active"}, caller)
                    job._on_line_status({"sip.callStatus": "hangup"}, SimpleNamespace(identity="sip-human", kind=sip))
                    job._on_line_status({"sip.callStatus": "hangup"}, SimpleNamespace(identity="sip-call_1", kind=web))
                    assert closes == [] and ctx.steps == [], (closes, ctx.steps)
                    job._on_line_status({"sip.callStatus": "hangup"}, caller)
                    assert closes == [CloseReason.PARTICIPANT_DISCONNECTED]
                    await eventually(
                        lambda: ctx.steps[-1:] == [("shutdown", "participant_disconnected")], timeout=10, what="end"
                    )
                finally:
                    await session.aclose()
                    await job.settle()
        row = store.read_sync(lambda db: sessions_repo.get(db, tenant_of("alice"), sid))
        assert (row["status"], row["end_reason"], row["error"]) == ("ended", "participant_disconnected", None), row
        assert store.read_sync(calls_repo.get_any, call_id)["status"] == "COMPLETED"
    finally:
        store.close()
