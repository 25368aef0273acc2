"""Nodes sharing one store (core/cluster.py): a sweeper runs on one node at a time and moves when its holder goes, a
lost node's calls end as worker_lost once (their rooms closed, their callbacks claimed by one sender), and a
callback event is claimed by one of two racing senders. Runs on SQLite and, in the second pass, on PostgreSQL."""

from __future__ import annotations

import asyncio
import logging
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from typing import Any

from core.cluster import WORKER_LOST, ClusterNode, Lease
from core.periodic import Periodic
from core.store import calls as calls_repo
from core.store import cluster as repo
from core.store import sessions as sessions_repo
from core.store.db import Store
from core.store.timefmt import now_iso, to_iso
from tests.api.seed import seed_agent, tenant_of

PHONE = "+15551230000"
log = logging.getLogger("tests.cluster")


def _ago(seconds: float) -> str:
    return to_iso(datetime.now(UTC) - timedelta(seconds=seconds))


def _call_on(store: Store, node_id: str, n: int, *, callback: str | None = "https://hooks.example.com/x") -> str:
    """An answered outbound call whose job runs on ``node_id``."""
    agent = seed_agent(store, "alice")

    def place(db: Any) -> str:
        sid = sessions_repo.create(
            db,
            owner_id=tenant_of("alice"),
            agent_id=agent["id"],
            direction="outbound",
            phone_number=PHONE,
            call_status="RINGING",
            room_name=f"vx-{n}",
        )
        calls_repo.create(
            db,
            tenant_of("alice"),
            call_id=f"call_{n}",
            agent_id=agent["id"],
            session_id=sid,
            room_name=f"vx-{n}",
            phone_number=PHONE,
            callback_url=callback,
        )
        sessions_repo.mark_active(db, sid, job_id=f"AJ_{n}", node_id=node_id)
        calls_repo.transition(db, f"call_{n}", "ANSWERED")
        return sid

    return store.write_sync(place)


async def test_a_lease_is_held_by_one_node_renewed_by_it_and_taken_over_when_released_or_expired(store):
    a, b = Lease(store, "sweeper", "node-a", 30.0), Lease(store, "sweeper", "node-b", 30.0)
    assert await a.take() and not await b.take()
    assert await a.take()  # its holder renews it
    await a.release()
    assert await b.take() and not await a.take()
    # an expired lease is anyone's: node-b's lease ran out (its node stopped renewing it)
    store.write_sync(lambda db: db.execute("UPDATE leases SET expires_at = ? WHERE name = 'sweeper'", [_ago(1)]))
    assert await a.take()
    assert store.read_sync(repo.holder, "sweeper") == "node-a"


async def test_a_leased_periodic_step_runs_on_one_node_and_moves_when_that_node_stops(store):
    ran: dict[str, int] = {"a": 0, "b": 0}

    def step(name: str):
        async def run() -> None:
            ran[name] += 1

        return run

    pa = Periodic("sweep", 0.05, step("a"), log, lease=Lease(store, "s", "a", 5.0))
    pb = Periodic("sweep", 0.05, step("b"), log, lease=Lease(store, "s", "b", 5.0))
    pa.start()
    deadline = asyncio.get_running_loop().time() + 10
    while ran["a"] < 3:
        assert asyncio.get_running_loop().time() < deadline
        await asyncio.sleep(0.02)
    pb.start()
    while ran["a"] < 10:
        assert asyncio.get_running_loop().time() < deadline
        await asyncio.sleep(0.02)
    assert ran["b"] == 0  # node b waits while node a holds the lease
    await pa.stop()  # releases it: b takes over at once, not when it would have expired
    while ran["b"] < 3:
        assert asyncio.get_running_loop().time() < deadline, "node b never took the sweep over"
        await asyncio.sleep(0.02)
    await pb.stop()


async def test_a_lost_nodes_calls_end_as_worker_lost_once_with_rooms_closed_and_one_callback_each(store):
    closed: list[str] = []

    async def close_room(row: dict[str, Any]) -> None:
        closed.append(row["room_name"])

    # Registered, not started: the reaping is driven by hand here (a started node's own reaper would race it).
    survivor = ClusterNode(store, "node-a", heartbeat_seconds=1, lost_seconds=3, close_room=close_room)
    other = ClusterNode(store, "node-b", heartbeat_seconds=1, lost_seconds=3, close_room=close_room)
    for node in ("node-a", "node-b"):
        store.write_sync(lambda db, node=node: repo.register(db, node, hostname="h", pid=1))
    lost_calls = [_call_on(store, "node-b", n) for n in (1, 2)]
    kept = _call_on(store, "node-a", 3)
    try:
        assert await survivor.reap_once() == 0  # node-b beats: nothing is lost
        # node-b is SIGKILLed: it stops beating (its beat is made old here instead of waiting 3 s)
        store.write_sync(lambda db: db.execute("UPDATE nodes SET heartbeat_at = ? WHERE id = 'node-b'", [_ago(10)]))
        # both survivors' reapers at once: one of them ends the calls
        racer = ClusterNode(store, "node-c", heartbeat_seconds=1, lost_seconds=3, close_room=close_room)
        assert sorted(await asyncio.gather(survivor.reap_once(), racer.reap_once())) == [0, 2]
        assert sorted(closed) == ["vx-1", "vx-2"]
        for sid in lost_calls:
            row = store.read_sync(sessions_repo.get_row, sid)
            assert (row["status"], row["end_reason"]) == ("ended", WORKER_LOST)
            assert "node-b" in row["error"] and "stopped answering" in row["error"]
        assert store.read_sync(sessions_repo.get_row, kept)["status"] == "active"
        calls = {r["id"]: r for r in store.read_sync(lambda db: list(db.query("SELECT * FROM outbound_calls")))}
        assert calls["call_1"]["status"] == "FAILED" and calls["call_3"]["status"] == "ANSWERED"
        nodes = {r["id"]: r for r in store.read_sync(repo.listing)}
        assert nodes["node-b"]["stop_reason"] == "lost" and nodes["node-a"]["stopped_at"] is None
        assert await survivor.reap_once() == 0  # once
        # node-b comes back (a partition, not a crash): its beat tells it that its calls were ended
        await other.beat_once()
        assert other.declared_lost
    finally:
        await survivor.stop()
    stopped = {r["id"]: r["stop_reason"] for r in store.read_sync(repo.listing)}
    assert stopped["node-a"] == "stopped"


def test_two_senders_racing_for_a_due_callback_claim_it_once(store):
    sid = _call_on(store, "node-a", 7)
    store.write_sync(lambda db: sessions_repo.end(db, sid, reason="completed"))
    now = now_iso()
    until = to_iso(datetime.now(UTC) + timedelta(seconds=20))
    due = store.read_sync(calls_repo.due_events, now)
    assert [e["call_id"] for e in due] == ["call_7"]  # the oldest undelivered event of the call

    other = Store(store.url or store.path)  # a second node's store on the same database
    try:
        with ThreadPoolExecutor(2) as pool:
            got = [
                f.result()
                for f in [pool.submit(s.write_sync, calls_repo.claim_due_events, now, until) for s in (store, other)]
            ]
    finally:
        other.close()
    assert sorted(len(g) for g in got) == [0, 1], got
    assert store.read_sync(calls_repo.due_events, now_iso()) == []  # claimed: nobody else sees it due


def test_a_tenants_call_limit_holds_when_two_nodes_create_calls_at_once(store):
    """Two nodes (two stores on one database) each count the tenant's live calls and create one, at the same
    moment: with a limit of 1, one of them is refused. The window between the count and the insert is widened on
    purpose; on PostgreSQL the tenant's lock closes it, on SQLite the one writer does."""
    import time as _time

    from core.store import tenants as tenants_repo
    from core.store.errors import LimitError

    agent = seed_agent(store, "alice")
    owner = tenant_of("alice")
    store.write_sync(lambda db: tenants_repo.ensure_personal(db, "alice"))
    store.write_sync(lambda db: tenants_repo.update(db, owner, {"max_concurrent_calls": 1}))

    def place(db: Any) -> str:
        sessions_repo.reserve_call_slot(db, owner)
        _time.sleep(0.3)  # the other node counts meanwhile
        return sessions_repo.create(db, owner_id=owner, agent_id=agent["id"], direction="inbound")

    other = Store(store.url or store.path)
    try:
        with ThreadPoolExecutor(2) as pool:
            futures = [pool.submit(s.write_sync, place) for s in (store, other)]
            outcomes = []
            for f in futures:
                try:
                    outcomes.append(f.result(timeout=30))
                except LimitError:
                    outcomes.append("refused")
    finally:
        other.close()
    assert sorted(o == "refused" for o in outcomes) == [False, True], outcomes
