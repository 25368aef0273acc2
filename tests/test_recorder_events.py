"""The recorder's share of the live stream, on a real SQLite file: the caller's interim transcripts as
`transcript.partial` (only when the text changed, at most every PARTIAL_INTERVAL, the latest text kept) and a
provider's failure as an `error` event; the session's end does not report the same failure twice."""

from __future__ import annotations

import asyncio
import time
from types import SimpleNamespace

from livekit.agents.voice.events import UserInputTranscribedEvent

from core.store import events as events_repo
from core.store import sessions as sessions_repo
from core.store.db import Store
from tests.api.seed import seed_agent, tenant_of
from worker.recorder import PARTIAL_INTERVAL, SessionRecorder


def _store(tmp_path) -> tuple[Store, str]:
    store = Store(tmp_path / "voxarena.db")
    agent = seed_agent(store, "alice")
    sid = store.write_sync(lambda db: sessions_repo.create(db, owner_id=tenant_of("alice"), agent_id=agent["id"]))
    store.write_sync(lambda db: sessions_repo.mark_active(db, sid, job_id="AJ_1"))
    return store, sid


def _events(store: Store, sid: str) -> list[dict]:
    return store.read_sync(lambda db: events_repo.for_call(db, tenant_of("alice"), sid, limit=1000))


def _heard(text: str, final: bool = False) -> UserInputTranscribedEvent:
    return UserInputTranscribedEvent(transcript=text, is_final=final)


async def test_interim_transcripts_are_throttled_deduplicated_and_end_on_the_latest_text(tmp_path):
    store, sid = _store(tmp_path)
    try:
        rec = SessionRecorder(store, sid)
        started = time.monotonic()
        for text in ("where", "where", "where is", "where is my", "where is my order"):
            rec._on_transcribed(_heard(text))
        deadline = time.monotonic() + 5
        while [e["payload"] for e in _events(store, sid) if e["type"] == "transcript.partial"][-1:] != [
            '{"speaker": "user", "text": "where is my order"}'
        ]:
            assert time.monotonic() < deadline, _events(store, sid)
            await asyncio.sleep(0.02)
        partials = [e for e in _events(store, sid) if e["type"] == "transcript.partial"]
        assert len(partials) == 2  # the first at once, the latest once the interval passed; none in between
        assert time.monotonic() - started >= PARTIAL_INTERVAL * 0.9
        rec._on_transcribed(_heard("where is my order"))  # unchanged: nothing
        rec._on_transcribed(_heard("where is my order?", final=True))
        await asyncio.sleep(PARTIAL_INTERVAL * 2)
        await rec.flush()
        assert len([e for e in _events(store, sid) if e["type"] == "transcript.partial"]) == 2
    finally:
        store.close()


async def test_a_provider_failure_is_one_error_event_before_the_call_ends(tmp_path):
    store, sid = _store(tmp_path)
    try:
        rec = SessionRecorder(store, sid, providers={"llm": ("gemini",)})
        failure = SimpleNamespace(
            type="llm_error", recoverable=False, error=SimpleNamespace(status_code=500, message="boom")
        )
        rec._on_error(SimpleNamespace(error=failure))
        await rec.close()
        await store.write(lambda db: sessions_repo.end(db, sid, reason="error", error=rec.error))
        types = [e["type"] for e in _events(store, sid)]
        assert types == ["call.started", "error", "call.ended"]
        error = _events(store, sid)[1]
        assert "llm provider gemini failed with status 500: boom" in error["payload"]
    finally:
        store.close()
