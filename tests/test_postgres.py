"""What only PostgreSQL has to prove: its schema is SQLite's, nodes starting at once migrate once, the copy from
SQLite is verified and exact, a server restart loses no acknowledged write, money past 2**53 stays exact, and two
nodes recording the same usage count it once. A real PostgreSQL (tests/harness/postgres.py), started here for
this module in both passes of `make test` (the second pass runs the rest of the store tests on it)."""

from __future__ import annotations

import os
import re
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from decimal import Decimal
from pathlib import Path

import pytest

from core.store import pg
from core.store import usage as ledger
from core.store.db import Store
from core.store.errors import StorageUnavailable
from core.store.migrations import MIGRATIONS
from core.store.schema import fresh as sqlite_schema
from core.store.timefmt import parse_iso
from pipelines.metering import make_event
from pipelines.pricing import PriceBook
from tests.api.seed import seed_agent, seed_call, tenant_of
from tests.conftest import ON_POSTGRES
from tests.harness.postgres import PostgresServer, start_postgres

pytestmark = pytest.mark.skipif(ON_POSTGRES, reason="runs once, in the first pass (it starts its own server)")

BOOK = PriceBook.load()
LATEST = MIGRATIONS[-1][0]


@pytest.fixture(scope="module")
def server() -> Iterator[PostgresServer]:
    s = start_postgres()
    try:
        yield s
    finally:
        s.stop()


def _events(owner: str, n: int, *, start: int = 0, session_id: str | None = None) -> list[dict]:
    return [
        make_event(
            BOOK,
            key=f"k{i}",
            owner_id=owner,
            session_id=session_id,
            agent_id=None,
            provider="deepgram",
            model=None,
            event_type="stt_minutes",
            quantity=Decimal("1.25"),
            at=parse_iso("2026-03-01T10:00:00Z"),
        ).as_dict()
        for i in range(start, start + n)
    ]


def _columns_sqlite(path: Path) -> dict[str, list[str]]:
    conn = sqlite3.connect(path)
    try:
        names = [
            r[0]
            for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'")
        ]
        return {n: sorted(r[1] for r in conn.execute(f"PRAGMA table_info({n})")) for n in names}
    finally:
        conn.close()


def test_the_postgresql_schema_has_every_table_column_and_index_of_sqlites(server, tmp_path):
    Store(tmp_path / "v.db").close()
    url = server.create_database()
    Store(url).close()
    db = pg.PgDatabase(url)
    try:
        columns: dict[str, list[str]] = {}
        for table, column in db.execute(
            "SELECT table_name, column_name FROM information_schema.columns WHERE table_schema = 'public'"
        ):
            columns.setdefault(table, []).append(column)
        indexes = {r[0] for r in db.execute("SELECT indexname FROM pg_indexes WHERE schemaname = 'public'")}
        (version,) = db.execute("SELECT MAX(version) FROM _migrations").fetchone()
    finally:
        db.close()
    assert {t: sorted(c) for t, c in columns.items()} == _columns_sqlite(tmp_path / "v.db")
    wanted = set(re.findall(r"^CREATE (?:UNIQUE )?INDEX (\w+)", sqlite_schema(), re.M))
    assert wanted and wanted <= indexes, wanted - indexes
    assert version == LATEST


def test_nodes_starting_at_once_apply_the_schema_once(server):
    url = server.create_database()
    barrier = threading.Barrier(4)

    def start() -> None:
        barrier.wait()
        Store(url, readers=1).close()

    with ThreadPoolExecutor(4) as pool:
        for f in [pool.submit(start) for _ in range(4)]:
            f.result(timeout=60)
    db = pg.PgDatabase(url)
    try:
        versions = [r[0] for r in db.execute("SELECT version FROM _migrations ORDER BY version")]
    finally:
        db.close()
    assert versions == list(range(1, LATEST + 1))


def test_money_past_two_to_the_53_is_summed_exactly(server):
    store = Store(server.create_database())
    try:
        big = 2**53 + 1  # a float would round it
        events = _events("t1", 3)
        for e in events:
            e["total_cost_nanos"] = big
        assert store.write_sync(ledger.record_events, events) == [True] * 3
        total = store.read_sync(lambda db: db.execute("SELECT SUM(total_cost_nanos) FROM usage_events").fetchone()[0])
        assert total == 3 * big and isinstance(total, int)
    finally:
        store.close()


def test_the_ledger_takes_a_recordings_storage_minutes_after_migrating(server):
    store = Store(server.create_database())
    try:
        (event,) = _events("t1", 1)
        event.update(event_type="storage_minutes", provider="local", unit="minute")
        assert store.write_sync(ledger.record_events, [event]) == [True]
        bad = {**_events("t1", 1, start=1)[0], "event_type": "disk_minutes"}
        with pytest.raises(Exception, match="check"):
            store.write_sync(ledger.record_events, [bad])
    finally:
        store.close()


def test_the_same_usage_recorded_by_two_nodes_at_once_is_counted_once(server):
    url = server.create_database()
    a, b = Store(url), Store(url)
    try:
        events = _events("t1", 200)
        with ThreadPoolExecutor(2) as pool:
            flags = [f.result() for f in [pool.submit(s.write_sync, ledger.record_events, events) for s in (a, b)]]
        assert [x or y for x, y in zip(*flags, strict=True)] == [True] * 200
        assert not any(x and y for x, y in zip(*flags, strict=True))  # each event stored by exactly one node
        one = events[0]["total_cost_nanos"]
        rollup = a.read_sync(
            lambda db: db.execute("SELECT SUM(total_cost_nanos), SUM(event_count) FROM cost_rollups").fetchone()
        )
        assert rollup == (200 * one, 200)
    finally:
        a.close()
        b.close()


def test_a_server_restart_loses_no_acknowledged_write(server, caplog):
    store = Store(server.create_database())
    acknowledged: list[int] = []
    refused: list[BaseException] = []
    stop = threading.Event()

    def writer() -> None:
        i = 0
        while not stop.is_set() and i < 5000:
            try:
                flags = store.write_sync(ledger.record_events, _events("t1", 1, start=i))
            except StorageUnavailable as e:
                refused.append(e)
            else:
                assert flags == [True]
                acknowledged.append(i)
            i += 1

    t = threading.Thread(target=writer)
    t.start()
    try:
        deadline = time.monotonic() + 30
        while len(acknowledged) < 50:
            assert time.monotonic() < deadline, "no writes before the restart"
            time.sleep(0.01)
        before = len(acknowledged)
        server.restart()
        deadline = time.monotonic() + 60
        while len(acknowledged) < before + 50:
            assert time.monotonic() < deadline, f"writes did not resume after the restart: {refused[-1:]}"
            time.sleep(0.01)
    finally:
        stop.set()
        t.join(timeout=60)
    keys = store.read_sync(lambda db: {r[0] for r in db.execute("SELECT idempotency_key FROM usage_events")})
    store.close()
    stored = {int(k.rsplit(":", 1)[-1].lstrip("k")) for k in keys}
    assert set(acknowledged) <= stored, f"lost: {sorted(set(acknowledged) - stored)[:10]}"
    # the writer saw the connection cut, reconnected and ran the writes again instead of failing them
    assert any("reconnected" in r.getMessage() for r in caplog.records), "the restart was never noticed"
    assert len(refused) <= 1, refused


def test_db_copy_moves_a_sqlite_database_verified_and_refuses_a_non_empty_target(server, tmp_path):
    data = tmp_path / "data"
    store = Store(data / "voxarena.db")
    try:
        agent = seed_agent(store, "alice")
        _, sid = seed_call(store, "alice", agent_id=agent["id"])
        store.write_sync(ledger.record_events, _events(tenant_of("alice"), 7, session_id=sid))
        live_before = store.read_sync(lambda db: db.execute("SELECT COUNT(*) FROM live_events").fetchone()[0])
    finally:
        store.close()
    url = server.create_database()
    cli = str(Path(sys.executable).with_name("voxarena"))
    env = {k: v for k, v in os.environ.items() if not k.startswith("VOXARENA_")}
    done = subprocess.run(
        [cli, "db", "copy", "--to", url, "--data-dir", str(data)], capture_output=True, text=True, timeout=120, env=env
    )
    assert done.returncode == 0, done.stderr
    assert "usage_events" in done.stdout and "verified" in done.stdout
    copied = Store(url)
    try:
        rows = copied.read_sync(
            lambda db: db.execute("SELECT COUNT(*), SUM(total_cost_nanos) FROM usage_events").fetchone()
        )
        assert rows == (7, 7 * _events("x", 1)[0]["total_cost_nanos"])
        # identity columns continue after the copied ids: a new live event gets a fresh one
        from core.store import events

        new_id = copied.write_sync(lambda db: events.emit(db, owner_id="t", call_sid=sid, event_type="x"))
        assert new_id > live_before
    finally:
        copied.close()
    again = subprocess.run(
        [cli, "db", "copy", "--to", url, "--data-dir", str(data)], capture_output=True, text=True, timeout=120, env=env
    )
    assert again.returncode == 1 and "not empty" in again.stderr
