"""GET /healthz: the Phony shape, activeCalls counting calls in progress; /health keeps its own shape."""

from __future__ import annotations

from core.store import sessions
from tests.api.seed import seed_call


async def test_healthz_answers_ok_with_uptime_and_the_calls_in_progress(client, store):
    resp = await client.get("/healthz")
    assert resp.status == 200
    body = await resp.json()
    assert body == {"status": "ok", "uptime": body["uptime"], "activeCalls": 0}
    assert isinstance(body["uptime"], int) and body["uptime"] >= 0

    seed_call(store, "alice", ended_at=None)  # active
    agent_id, _ = seed_call(store, "bob", ended_at=None, started_at="2026-01-11T10:00:00.000000Z")
    seed_call(store, "bob", agent_id=agent_id, started_at="2026-01-12T10:00:00.000000Z")  # ended
    store.write_sync(lambda db: sessions.create(db, owner_id="bob", agent_id=agent_id, room_name="waiting"))  # pending
    assert (await (await client.get("/healthz")).json())["activeCalls"] == 2
    assert store.read_sync(sessions.count_active) == 2


async def test_health_keeps_its_own_fields(client):
    body = await (await client.get("/health")).json()
    assert {"status", "version", "uptime", "timestamp", "database", "livekit", "event_loop"} <= set(body)


async def test_health_names_this_node_its_store_and_whether_it_drains(client, settings, store):
    from core.store import cluster as cluster_repo

    node = (await (await client.get("/health")).json())["node"]
    assert node["draining"] is False
    assert node["backend"] == ("postgresql" if settings.database_url else "sqlite")
    registered = {r["id"]: r for r in store.read_sync(cluster_repo.listing)}
    assert registered[node["id"]]["stopped_at"] is None  # the node registered itself at start
