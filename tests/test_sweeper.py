from __future__ import annotations

from core.settings import Settings
from core.store import sessions as repo
from core.store.timefmt import now_iso
from tests.api.seed import seed_call
from worker.runtime import Runtime


async def test_the_sweeper_closes_only_sessions_silent_past_the_orphan_cutoff(tmp_path, store):
    settings = Settings(data_dir=tmp_path, session_orphan_seconds=600, worker_enabled=False)
    _, stale = seed_call(store, "alice", started_at="2026-01-01T10:00:00.000000Z", ended_at=None)
    store.write_sync(
        lambda db: db.execute(
            "UPDATE sessions SET last_activity_at = '2026-01-01T10:05:00.000000Z' WHERE id = ?", [stale]
        )
    )
    _, live = seed_call(store, "alice", started_at=now_iso(), ended_at=None)
    _, done = seed_call(store, "alice")
    done_before = store.read_sync(repo.get_row, done)
    assert await Runtime(settings, store).sweep_once() == 1
    s = store.read_sync(repo.get_row, stale)
    assert s["status"] == "ended" and s["end_reason"] == "orphaned"
    assert s["ended_at"] == "2026-01-01T10:05:00.000000Z" and s["duration_ms"] == 300_000
    assert store.read_sync(repo.get_row, live)["status"] == "active"
    assert store.read_sync(repo.get_row, done) == done_before
    assert await Runtime(settings, store).sweep_once() == 0


async def test_the_sweeper_spares_a_silent_session_whose_job_is_running_here(tmp_path, store):
    settings = Settings(data_dir=tmp_path, session_orphan_seconds=600, worker_enabled=False)
    _, running = seed_call(store, "alice", started_at="2026-01-01T10:00:00.000000Z", ended_at=None)
    _, dead = seed_call(store, "alice", started_at="2026-01-01T10:00:00.000000Z", ended_at=None)
    for sid, job in ((running, "AJ_running"), (dead, "AJ_gone")):
        store.write_sync(
            lambda db, sid=sid, job=job: db.execute(
                "UPDATE sessions SET job_id = ?, last_activity_at = '2026-01-01T10:05:00.000000Z' WHERE id = ?",
                [job, sid],
            )
        )
    runtime = Runtime(settings, store)
    runtime.running_job_ids = lambda: {"AJ_running"}  # what the AgentServer reports as its active jobs
    assert await runtime.sweep_once() == 1
    assert store.read_sync(repo.get_row, dead)["end_reason"] == "orphaned"
    spared = store.read_sync(repo.get_row, running)
    assert spared["status"] == "active" and spared["last_activity_at"] > "2026-01-01T10:05:00.000000Z"


async def test_the_sweeper_runs_before_the_worker_has_registered(tmp_path, store):
    settings = Settings(
        data_dir=tmp_path,
        session_orphan_seconds=600,
        livekit_url="ws://127.0.0.1:9",
        livekit_api_key="k",
        livekit_api_secret="s" * 32,
    )
    _, stale = seed_call(store, "alice", started_at="2026-01-01T10:00:00.000000Z", ended_at=None)
    store.write_sync(
        lambda db: db.execute(
            "UPDATE sessions SET last_activity_at = '2026-01-01T10:05:00.000000Z' WHERE id = ?", [stale]
        )
    )
    runtime = Runtime(settings, store)
    runtime.server = runtime._build_server()  # built, not run: LiveKit has not seen it yet
    assert await runtime.sweep_once() == 1
    assert runtime.load.active_calls() == 0
