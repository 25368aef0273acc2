"""The store's one writer thread survives whatever a caller or a statement does: a cancelled caller, a failing
write, a write that breaks its own savepoint. Writes submitted after each of those still complete."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from pathlib import Path

import pytest

from core.store.db import Store


def _insert(db, value: str) -> str:
    db.execute("INSERT INTO t (v) VALUES (?)", [value])
    return value


def _values(db) -> list[str]:
    return [r[0] for r in db.execute("SELECT v FROM t ORDER BY v").fetchall()]


@pytest.fixture
def store(tmp_path: Path):
    s = Store(tmp_path / "w.db")
    s.write_sync(lambda db: db.execute("CREATE TABLE t (v TEXT PRIMARY KEY)"))
    yield s
    s.close()


async def _hold_writer(store: Store) -> tuple[asyncio.Future[None], threading.Event]:
    """Occupy the writer thread until the returned event is set, so later writes queue up behind it."""
    gate, entered = threading.Event(), threading.Event()

    def blocking(db) -> None:
        entered.set()
        gate.wait(10)

    blocker = asyncio.ensure_future(store.write(blocking))
    assert await asyncio.to_thread(entered.wait, 10)
    return blocker, gate


async def _writes_still_complete(store: Store, tag: str) -> None:
    results = await asyncio.wait_for(asyncio.gather(*(store.write(_insert, f"{tag}-{i}") for i in range(20))), 10)
    assert results == [f"{tag}-{i}" for i in range(20)]
    assert store._writer.is_alive()


async def test_a_cancelled_caller_does_not_kill_the_writer_and_later_writes_complete(store: Store) -> None:
    blocker, gate = await _hold_writer(store)
    # Queued behind the blocker, then its awaiting task is cancelled before the writer reaches it (the case that
    # killed the thread: the writer then delivered a result to a cancelled future).
    queued = asyncio.ensure_future(store.write(_insert, "cancelled-while-queued"))
    await asyncio.sleep(0)
    queued.cancel()
    with pytest.raises(asyncio.CancelledError):
        await queued
    # The same, on the thread-safe API: a future cancelled before its turn is never run.
    skipped = store.submit(_insert, "cancelled-before-its-turn")
    assert skipped.cancel()
    # Cancelled while its write is running: the result arrives at a future nobody waits for.
    running_gate, running_entered = threading.Event(), threading.Event()

    def slow(db) -> str:
        running_entered.set()
        running_gate.wait(10)
        return _insert(db, "cancelled-while-running")

    slow_task = asyncio.ensure_future(store.write(slow))
    gate.set()
    await blocker
    assert await asyncio.to_thread(running_entered.wait, 10)
    slow_task.cancel()
    running_gate.set()
    with pytest.raises(asyncio.CancelledError):
        await slow_task
    await _writes_still_complete(store, "after-cancel")
    values = await store.read(_values)
    assert "cancelled-before-its-turn" not in values  # skipped, never run
    assert "cancelled-while-running" in values  # completed and discarded
    assert len([v for v in values if v.startswith("after-cancel")]) == 20


async def test_a_failing_write_fails_alone_and_the_group_commits(store: Store) -> None:
    blocker, gate = await _hold_writer(store)
    # These three queue up and run as one group: the middle one violates the primary key.
    first = asyncio.ensure_future(store.write(_insert, "g-1"))
    bad = asyncio.ensure_future(store.write(_insert, "g-1"))
    last = asyncio.ensure_future(store.write(_insert, "g-2"))
    await asyncio.sleep(0)
    gate.set()
    await blocker
    assert await first == "g-1" and await last == "g-2"
    with pytest.raises(Exception, match="UNIQUE"):
        await bad
    await _writes_still_complete(store, "after-failure")


async def test_a_write_that_breaks_its_savepoint_fails_its_group_but_not_the_writer(store: Store) -> None:
    def rogue(db) -> None:
        db.execute("INSERT INTO t (v) VALUES ('rogue')")
        db.conn.execute("ROLLBACK")  # ends the group's transaction under the writer's feet

    with pytest.raises(sqlite3.Error):
        await store.write(rogue)
    with pytest.raises(sqlite3.Error):
        await store.write(lambda db: db.execute("SAVEPOINT w; this is not SQL"))
    await _writes_still_complete(store, "after-rogue")
    assert "rogue" not in await store.read(_values)


async def test_a_failing_commit_fails_its_writes_and_the_next_ones_complete(store: Store, tmp_path: Path) -> None:
    # A deferred foreign key fails only at COMMIT.
    await store.write(lambda db: db.execute("CREATE TABLE parent (id INTEGER PRIMARY KEY)"))
    await store.write(
        lambda db: db.execute("CREATE TABLE child (pid INTEGER REFERENCES parent(id) DEFERRABLE INITIALLY DEFERRED)")
    )
    with pytest.raises(Exception, match="FOREIGN KEY"):
        await store.write(lambda db: db.execute("INSERT INTO child (pid) VALUES (42)"))
    await _writes_still_complete(store, "after-commit-failure")
