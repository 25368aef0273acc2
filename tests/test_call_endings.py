"""How calls end in the store, on a real SQLite file: an outbound call and its session end once, with one reason and
the same two instants, whoever ends them first (the API, the job, a webhook); the live stream starts a call before
its status changes."""

from __future__ import annotations

import json
from typing import Any

from core.store import calls as calls_repo
from core.store import events as events_repo
from core.store import sessions as sessions_repo
from core.store import webhooks
from core.store.db import Store
from tests.api.seed import seed_agent, tenant_of

PHONE = "+15551234567"


def _placed(tmp_path) -> tuple[Store, str, str]:
    """An outbound call as the API places it: a pending session and its RINGING call."""
    store = Store(tmp_path / "voxarena.db")
    agent = seed_agent(store, "alice")

    def place(db: Any) -> tuple[str, str]:
        sid = sessions_repo.create(
            db,
            owner_id=tenant_of("alice"),
            agent_id=agent["id"],
            direction="outbound",
            phone_number=PHONE,
            call_status="RINGING",
            room_name="vx-out-1",
        )
        calls_repo.create(
            db,
            tenant_of("alice"),
            call_id="call_1",
            agent_id=agent["id"],
            session_id=sid,
            room_name="vx-out-1",
            phone_number=PHONE,
            callback_url=None,
        )
        return sid, "call_1"

    sid, call_id = store.write_sync(place)
    return store, sid, call_id


def _events(store: Store, sid: str) -> list[dict]:
    rows = store.read_sync(lambda db: events_repo.for_call(db, tenant_of("alice"), sid, limit=1000))
    return [{"type": r["type"], **json.loads(r["payload"])} for r in rows]


def test_an_outbound_call_streams_its_start_before_its_ringing(tmp_path):
    store, sid, call_id = _placed(tmp_path)
    try:
        assert _events(store, sid) == []  # placed, not started: nothing on the stream yet (the callback has it)
        store.write_sync(lambda db: sessions_repo.mark_active(db, sid, job_id="AJ_1"))
        store.write_sync(lambda db: calls_repo.transition(db, call_id, "ANSWERED"))
        got = [(e["type"], e.get("call_status")) for e in _events(store, sid)]
        assert got == [("call.started", None), ("call.updated", "RINGING"), ("call.updated", "ANSWERED")]
    finally:
        store.close()


def test_a_call_ended_through_the_api_ends_its_session_with_the_same_reason_and_instants(tmp_path):
    store, sid, call_id = _placed(tmp_path)
    try:
        store.write_sync(lambda db: sessions_repo.mark_active(db, sid, job_id="AJ_1"))
        store.write_sync(lambda db: calls_repo.transition(db, call_id, "ANSWERED", at="2026-12-01T10:00:02.000000Z"))
        store.write_sync(
            lambda db: calls_repo.transition(
                db, call_id, "COMPLETED", end_reason="ended_by_api", at="2026-12-01T10:00:32.500000Z"
            )
        )
        # the room's deletion reaches the API as a webhook before the job records anything
        webhooks_event = {"id": "EV_1", "event": "room_finished", "room": "vx-out-1", "created_at": 1796119235}
        store.write_sync(lambda db: webhooks.apply_event(db, webhooks_event, [sid]))
        store.write_sync(lambda db: sessions_repo.end(db, sid, reason="participant_disconnected"))  # the job, late
        session = store.read_sync(sessions_repo.get_row, sid)
        call = store.read_sync(calls_repo.get_any, call_id)
        assert (session["end_reason"], call["end_reason"]) == ("ended_by_api", "ended_by_api")
        assert session["ended_at"] == call["ended_at"] == "2026-12-01T10:00:32.500000Z"
        assert session["duration_ms"] == call["duration_ms"] == 30_500
        (ended,) = [e for e in _events(store, sid) if e["type"] == "call.ended"]
        assert (ended["reason"], ended["duration"], ended["ended_at"]) == ("ended_by_api", 31, call["ended_at"])
    finally:
        store.close()


def test_a_session_ending_first_ends_its_call_at_the_same_instant(tmp_path):
    store, sid, call_id = _placed(tmp_path)
    try:
        store.write_sync(lambda db: sessions_repo.mark_active(db, sid, job_id="AJ_1"))
        store.write_sync(lambda db: calls_repo.transition(db, call_id, "ANSWERED", at="2026-12-01T10:00:02.000000Z"))
        store.write_sync(lambda db: sessions_repo.end(db, sid, reason="orphaned", ended_at="2026-12-01T10:01:02Z"))
        session = store.read_sync(sessions_repo.get_row, sid)
        call = store.read_sync(calls_repo.get_any, call_id)
        assert (call["status"], call["end_reason"], session["end_reason"]) == ("COMPLETED", "orphaned", "orphaned")
        assert session["duration_ms"] == call["duration_ms"] == 60_000
        types = [e["type"] for e in _events(store, sid)]
        assert types[-2:] == ["call.updated", "call.ended"], types
    finally:
        store.close()


def test_a_call_never_answered_is_not_analysed_however_it_ends(tmp_path):
    store, sid, call_id = _placed(tmp_path)
    try:
        # hung up through the API while ringing; the job (or a webhook) ends the session afterwards
        store.write_sync(lambda db: calls_repo.transition(db, call_id, "FAILED", end_reason="canceled"))
        store.write_sync(lambda db: sessions_repo.end(db, sid, reason="participant_disconnected"))
        record = store.read_sync(lambda db: sessions_repo.get(db, tenant_of("alice"), sid))
        assert (record["end_reason"], record["duration_ms"]) == ("canceled", 0)
        analysis = record["analysis_row"]
        assert analysis["status"] == "skipped" and analysis["error"] == (
            "skipped: nothing to analyse, the call was never answered (canceled)"
        ), analysis
    finally:
        store.close()
