"""Storage failures while running: a write the disk cannot take answers 503 with the reason in the one error body,
/health says the store is degraded, reads keep working, and everything recovers when the condition clears. The
conditions are real: SQLite's own SQLITE_FULL (a page limit on the writer's connection) and an I/O error from a WAL
file the kernel refuses to write."""

from __future__ import annotations

import asyncio
import logging
import os
import sqlite3
from pathlib import Path

import pytest

from core.store.db import Store
from tests.api.seed import AGENT_WIRE
from tests.conftest import assert_error, sqlite_only
from tests.storage_conditions import make_unwritable

UNLIMITED_PAGES = 1_073_741_823


def _cap_pages_at_current_size(db) -> None:
    pages = db.execute("PRAGMA page_count").fetchone()[0]
    db.execute(f"PRAGMA max_page_count = {pages}")


def _uncap_pages(db) -> None:
    db.execute(f"PRAGMA max_page_count = {UNLIMITED_PAGES}")


async def _health(client) -> dict:
    resp = await client.get("/health")
    assert resp.status == 200
    return await resp.json()


@sqlite_only
async def test_a_full_disk_answers_503_with_the_reason_and_health_degrades_until_it_clears(client, auth, store, caplog):
    h = auth("alice")
    assert (await client.post("/api/agents", json=AGENT_WIRE, headers=h)).status == 201
    await store.write(_cap_pages_at_current_size)
    big = {**AGENT_WIRE, "name": "Big", "systemPrompt": "x" * 50_000}  # needs pages the database may not grow

    with caplog.at_level(logging.INFO, logger="voxarena.store"):
        for _ in range(3):
            body = await assert_error(await client.post("/api/agents", json=big, headers=h), 503, "storage_unavailable")
            assert "the disk holding the database is full (SQLITE_FULL)" in body["detail"], body
        health = await _health(client)
        assert health["status"] == "degraded"
        assert health["database"]["status"] == "degraded"
        assert "SQLITE_FULL" in health["database"]["detail"]
        listed = await client.get("/api/agents", headers=h)  # reads still work
        assert listed.status == 200 and len((await listed.json())["agents"]) == 1

        await store.write(_uncap_pages)  # space again
        assert (await client.post("/api/agents", json=big, headers=h)).status == 201
        health = await _health(client)
    assert health["status"] == "healthy" and health["database"]["status"] == "ok", health
    said = [r.getMessage() for r in caplog.records if r.name == "voxarena.store"]
    assert sum("store degraded" in m for m in said) == 1, said  # once, not once per failed write
    assert sum("store recovered" in m for m in said) == 1, said


@sqlite_only
async def test_an_io_error_on_the_wal_answers_503_and_the_store_recovers(client, auth, store, settings):
    if os.geteuid() != 0:
        pytest.skip("only the immutable flag (root) binds a file SQLite already has open; mode bits do not")
    h = auth("alice")
    assert (await client.post("/api/agents", json=AGENT_WIRE, headers=h)).status == 201
    wal = Path(f"{settings.database_path}-wal")
    assert wal.exists()
    undo = make_unwritable(wal)
    try:
        body = await assert_error(
            await client.post("/api/agents", json=AGENT_WIRE, headers=h), 503, "storage_unavailable"
        )
        assert "I/O error" in body["detail"] and "SQLITE_IOERR" in body["detail"], body
        assert (await _health(client))["database"]["status"] == "degraded"
    finally:
        undo()
    assert (await client.post("/api/agents", json=AGENT_WIRE, headers=h)).status == 201
    assert (await _health(client))["status"] == "healthy"
    assert len((await (await client.get("/api/agents", headers=h)).json())["agents"]) == 2


def test_a_write_that_fails_for_its_own_reasons_does_not_degrade_the_store(tmp_path):
    store = Store(tmp_path / "x.db")
    try:
        store.write_sync(lambda db: db.execute("CREATE TABLE t (x UNIQUE)"))
        store.write_sync(lambda db: db.execute("INSERT INTO t VALUES (1)"))
        with pytest.raises(sqlite3.IntegrityError, match="UNIQUE"):  # the constraint's own error, untouched
            store.write_sync(lambda db: db.execute("INSERT INTO t VALUES (1)"))
        assert store.failure is None
    finally:
        store.close()


async def test_a_background_step_says_once_that_the_storage_fails_without_a_traceback(caplog):
    from core.periodic import Periodic
    from core.store.errors import StorageUnavailable

    runs = []

    async def step() -> None:
        runs.append(1)
        if len(runs) <= 3 or len(runs) == 5:
            raise StorageUnavailable("the database cannot be used now: the disk holding the database is full")

    periodic = Periodic("sweeper", 0.01, step, logging.getLogger("voxarena.test"))
    with caplog.at_level(logging.WARNING, logger="voxarena.test"):
        periodic.start()
        deadline = asyncio.get_running_loop().time() + 10
        while len(runs) < 6:
            assert asyncio.get_running_loop().time() < deadline
            await asyncio.sleep(0.01)
        await periodic.stop()
    said = [r for r in caplog.records if r.name == "voxarena.test"]
    assert [r.getMessage().startswith("sweeper skipped while the storage fails") for r in said] == [True, True]
    assert all(r.exc_info is None for r in said)  # two streaks, one line each, no traceback
