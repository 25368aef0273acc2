"""The job's phases (worker/entrypoint.py, CallJob) on a real SQLite file, with what they use of LiveKit's
JobContext faked: a phase that refuses ends the call through the one end path (the session says why, the caller is
hung up, the job shuts down with the reason) and the later phases never run; the job's own tasks are settled at its
end, the late ones cancelled and a failed one logged."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from types import SimpleNamespace
from typing import Any

import pytest
from livekit.agents.utils import http_context

from core.settings import Settings
from core.store import agents as agents_repo
from core.store import calls as calls_repo
from core.store import sessions as sessions_repo
from core.store.db import Store
from pipelines.pricing import PriceBook
from tests.api.seed import seed_agent, tenant_of
from tests.test_call_endings import PHONE, _placed
from tests.test_job_ending import _FakeJob, _job
from worker import entrypoint
from worker.config import DispatchMeta


class _FakeRoomJob(_FakeJob):
    """Also joins the room and waits for the caller, who never comes."""

    def __init__(self, store: Store, sid: str) -> None:
        super().__init__(store, sid)
        self.job.id = "AJ_1"
        self.room = SimpleNamespace(name="vx-out-1")
        self.proc = SimpleNamespace(userdata={"pricebook": PriceBook.load(None), "vad": None})

    async def connect(self) -> None:
        self.steps.append(("connect", None))

    async def wait_for_participant(self, *, identity: str | None = None) -> Any:
        self.steps.append(("wait", identity))
        await asyncio.Event().wait()


def _keyed(settings: Settings) -> Settings:
    """Providers configured (never reached: no phase here opens a provider's connection)."""
    return dataclasses.replace(settings, deepgram_api_key="k", google_api_key="k", elevenlabs_api_key="k")


def _web_call(store: Store) -> tuple[str, dict[str, Any]]:
    agent = seed_agent(store, "alice")
    sid = store.write_sync(
        lambda db: sessions_repo.create(db, owner_id=tenant_of("alice"), agent_id=agent["id"], room_name="vx-out-1")
    )  # a web call
    store.write_sync(lambda db: sessions_repo.mark_active(db, sid, job_id="AJ_1"))
    return sid, store.read_sync(agents_repo.get_any_owner, agent["id"])


async def test_a_deleted_agent_is_refused_by_the_build_and_the_call_ends_before_it_joins_the_room(tmp_path, settings):
    store = Store(tmp_path / "voxarena.db")
    try:
        sid, row = _web_call(store)
        ctx = _FakeRoomJob(store, sid)
        meta = DispatchMeta(agent_id=row["id"], session_id=sid, owner_id=row["owner_id"])
        job = _job(ctx, settings, store, sid, {**row, "deleted_at": "2026-01-01T00:00:00.000000Z"}, meta)
        await job.start()
        assert ctx.steps == [("delete", ("vx-out-1", "recorded")), ("shutdown", "agent_deleted")]
        session = store.read_sync(sessions_repo.get_row, sid)
        assert (session["end_reason"], session["error"]) == ("agent_deleted", f"agent {row['id']} was deleted")
        assert job.meter is None and job.session is None
    finally:
        store.close()


async def test_providers_not_configured_refuse_the_build_with_the_providers_complaint(tmp_path, settings):
    store = Store(tmp_path / "voxarena.db")
    try:
        sid, row = _web_call(store)
        ctx = _FakeRoomJob(store, sid)
        meta = DispatchMeta(agent_id=row["id"], session_id=sid, owner_id=row["owner_id"])
        job = _job(ctx, settings, store, sid, row, meta)
        async with http_context.open():
            await job.start()
        assert ctx.steps == [("delete", ("vx-out-1", "recorded")), ("shutdown", "provider_error")]
        session = store.read_sync(sessions_repo.get_row, sid)
        assert session["end_reason"] == "provider_error" and "no API key configured" in session["error"], session
        assert job.meter is not None and job.meter_closed  # built, then closed by the end path
    finally:
        store.close()


async def test_an_outbound_call_with_no_trunk_is_refused_by_the_dial_and_never_waits_for_its_callee(tmp_path, settings):
    store, sid, call_id = _placed(tmp_path)
    try:
        store.write_sync(lambda db: sessions_repo.mark_active(db, sid, job_id="AJ_1"))
        row = store.read_sync(agents_repo.get_any_owner, store.read_sync(sessions_repo.get_row, sid)["agent_id"])
        ctx = _FakeRoomJob(store, sid)
        meta = DispatchMeta(
            agent_id=row["id"],
            session_id=sid,
            owner_id=row["owner_id"],
            direction="outbound",
            phone_number=PHONE,
            call_id=call_id,
        )
        job = _job(
            ctx,
            dataclasses.replace(_keyed(settings), sip_outbound_trunk_id=""),
            store,
            sid,
            row,
            meta,
            caller_identity="sip-call_1",
        )
        assert job.phone_call_id == call_id
        async with http_context.open():
            await job.start()
        assert ctx.steps == [
            ("connect", None),
            ("remove", ("vx-out-1", "sip-call_1")),
            ("delete", ("vx-out-1", "recorded")),
            ("shutdown", "sip_not_configured"),
        ]
        phone_call = store.read_sync(calls_repo.get_any, call_id)
        session = store.read_sync(sessions_repo.get_row, sid)
        assert (phone_call["status"], phone_call["end_reason"]) == ("FAILED", "sip_not_configured")
        assert session["error"] == "Failed: no outbound SIP trunk or phone number is configured."
    finally:
        store.close()


async def test_a_caller_who_never_joins_ends_the_call_after_the_join_timeout(tmp_path, settings, monkeypatch):
    monkeypatch.setattr(entrypoint, "CALLER_JOIN_TIMEOUT", 0.2)
    store = Store(tmp_path / "voxarena.db")
    try:
        sid, row = _web_call(store)
        ctx = _FakeRoomJob(store, sid)
        meta = DispatchMeta(agent_id=row["id"], session_id=sid, owner_id=row["owner_id"])
        job = _job(ctx, _keyed(settings), store, sid, row, meta)
        async with http_context.open():
            await job.start()
        assert ctx.steps == [
            ("connect", None),
            ("wait", None),
            ("delete", ("vx-out-1", "recorded")),
            ("shutdown", "caller_never_joined"),
        ]
        assert store.read_sync(sessions_repo.get_row, sid)["end_reason"] == "caller_never_joined"
    finally:
        store.close()


async def test_the_jobs_tasks_are_awaited_at_its_end_and_the_late_ones_cancelled(
    tmp_path, settings, monkeypatch, caplog: pytest.LogCaptureFixture
):
    monkeypatch.setattr(entrypoint, "SETTLE_TIMEOUT", 0.3)
    store = Store(tmp_path / "voxarena.db")
    try:
        sid, row = _web_call(store)
        job = _job(_FakeRoomJob(store, sid), settings, store, sid, row, DispatchMeta(agent_id=row["id"]))
        done: list[str] = []

        async def quick() -> None:
            await asyncio.sleep(0.05)
            done.append("quick")

        async def failing() -> None:
            raise RuntimeError("boom")

        never = asyncio.Event()
        job.spawn(quick(), "quick")
        job.spawn(failing(), "failing")
        job.spawn(never.wait(), "stuck")
        stuck = next(t for t in job.tasks.tasks if t.get_name().startswith("stuck"))
        with caplog.at_level(logging.ERROR, logger="voxarena.job"):
            await job.settle()
        assert done == ["quick"] and stuck.cancelled() and job.tasks.tasks == set()
        assert f"task failing:{sid} failed" in caplog.text
    finally:
        store.close()
