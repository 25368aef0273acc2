"""The rules every credentialed socket follows after its handshake (/events/ws, /ws/chat), over real websockets on
two real API nodes sharing one SQLite file: a revoked key, a removed member or a suspended tenant loses its open
sockets (4401 / 4403) whichever node made the change; chat sockets are capped per credential and per tenant before
the upgrade, and across nodes through a real Redis."""

from __future__ import annotations

import asyncio
import time

import aiohttp
import pytest
from aiohttp import WSMsgType
from aiohttp.test_utils import TestClient, TestServer

from api.app import create_app
from api.keys import ISSUER
from core.store.db import Store
from tests.api.chat_support import fakes, idle_seconds, llm_requests  # noqa: F401  (fixtures, found by pytest by name)
from tests.api.chat_support import settings as chat_settings  # noqa: F401  (fixtures, found by pytest by name)
from tests.api.seed import seed_agent
from tests.api.test_events import live_call, next_event, upgrade_headers
from tests.conftest import assert_error
from tests.harness.redis_server import start_redis

ADMIN = "root"


@pytest.fixture
def settings(chat_settings):
    return chat_settings.with_(
        admin_users=(ADMIN,), socket_recheck_seconds=0.2, chat_max_connections=3, chat_max_connections_per_tenant=5
    )


@pytest.fixture
async def other_node(settings, client):
    """A second API process on the same database: what it changes reaches the first one only through the store."""
    store = Store(settings.database_path)
    async with TestClient(TestServer(create_app(settings, store=store), host="127.0.0.1")) as c:
        yield c
    store.close()


async def _json(resp, status: int = 200):
    assert resp.status == status, await resp.text()
    return await resp.json()


async def _key(client, auth, user: str = "alice") -> tuple[str, str]:
    made = await _json(await client.post("/api/keys", json={"name": "socket"}, headers=auth(user)), 201)
    return made["key"], made["id"]


async def _chat_session(client, auth, store, user: str = "alice") -> str:
    seed_agent(store, user, name="Front Desk")
    r = await client.post(
        "/trigger-agent", json={"message": "Hi", "agent_slug": "front-desk", "mode": "text"}, headers=auth(user)
    )
    return (await _json(r))["session_id"]


async def closed_with(ws: aiohttp.ClientWebSocketResponse, timeout: float = 10.0) -> int | None:
    """The close code the server ends this socket with (events that arrive before are skipped)."""
    deadline = time.monotonic() + timeout
    while True:
        msg = await ws.receive(timeout=max(0.1, deadline - time.monotonic()))
        if msg.type == WSMsgType.CLOSE:  # the code the server's close frame carries
            return msg.data
        if msg.type in (WSMsgType.CLOSING, WSMsgType.CLOSED):
            return ws.close_code


async def test_streams_and_chats_lose_a_revoked_key_a_removed_member_and_a_suspended_tenant_changed_on_another_node(
    client, other_node, auth, store
):
    key, key_id = await _key(client, auth)
    team = await _json(
        await other_node.post("/tenants", json={"name": "team", "owner_user_id": "alice"}, headers=auth(ADMIN)), 201
    )

    def in_team(user):
        return {**auth(user), "X-Tenant-ID": team["id"]}

    await _json(
        await other_node.post(f"/tenants/{team['id']}/members", json={"user_id": "carol"}, headers=auth("alice")), 201
    )
    sid = await _chat_session(client, auth, store)
    stream_by_key = await client.ws_connect(f"/events/ws?token={key}")
    chat_by_key = await client.ws_connect(f"/ws/chat/{sid}", headers={"X-API-Key": key})
    carols = await client.ws_connect("/events/ws", headers=in_team("carol"))
    alices_team = await client.ws_connect("/events/ws", headers=in_team("alice"))
    bobs = await client.ws_connect("/events/ws", headers=auth("bob"))

    assert (await other_node.delete(f"/api/keys/{key_id}", headers=auth("alice"))).status == 200
    assert await closed_with(stream_by_key) == 4401
    assert await closed_with(chat_by_key) == 4401  # idle: closed by the periodic re-check, not by a message
    assert not carols.closed and not alices_team.closed

    assert (await other_node.delete(f"/tenants/{team['id']}/members/carol", headers=auth("alice"))).status == 200
    assert await closed_with(carols) == 4403
    assert not alices_team.closed

    r = await other_node.patch(f"/tenants/{team['id']}", json={"status": "suspended"}, headers=auth(ADMIN))
    assert r.status == 200, await r.text()
    assert await closed_with(alices_team) == 4403

    bob_call = live_call(store, "bob")  # the others' sockets go on
    first = await next_event(bobs)
    assert (first["type"], first["call_sid"]) == ("call.started", bob_call)
    await bobs.close()


@pytest.fixture
def slow_recheck(settings):
    return settings.with_(socket_recheck_seconds=3600.0)


async def test_a_chat_message_after_the_key_is_revoked_closes_the_socket_with_4401_and_drives_no_turn(
    slow_recheck, store, fakes
):
    app = create_app(slow_recheck, store=store)
    async with TestClient(TestServer(app, host="127.0.0.1")) as client:
        headers = {"Authorization": f"Bearer {client.app[ISSUER].issue('alice')}"}
        made = await _json(await client.post("/api/keys", json={"name": "socket"}, headers=headers), 201)
        seed_agent(store, "alice", name="Front Desk")
        r = await client.post(
            "/trigger-agent", json={"message": "Hi", "agent_slug": "front-desk", "mode": "text"}, headers=headers
        )
        sid = (await _json(r))["session_id"]
        async with client.ws_connect(f"/ws/chat/{sid}", headers={"X-API-Key": made["key"]}) as ws:
            await ws.send_json({"type": "ping"})
            assert (await ws.receive_json(timeout=10))["type"] == "pong"
            asked = len(llm_requests(fakes))
            assert (await client.delete(f"/api/keys/{made['id']}", headers=headers)).status == 200
            await ws.send_json({"type": "message", "content": "Still there?"})
            assert await closed_with(ws) == 4401
        assert len(llm_requests(fakes)) == asked
        kept = store.read_sync(
            lambda db: db.execute(
                "SELECT COUNT(*) FROM transcript_items WHERE content = ?", ["Still there?"]
            ).fetchone()[0]
        )
        assert kept == 0  # the refused message was not taken


async def test_chat_sockets_are_capped_per_credential_and_per_tenant_before_the_upgrade(client, auth, store):
    sid = await _chat_session(client, auth, store)
    first, _ = await _key(client, auth)
    second, _ = await _key(client, auth)
    held = [await client.ws_connect(f"/ws/chat/{sid}", headers={"X-API-Key": first}) for _ in range(3)]
    body = await assert_error(
        await client.get(f"/ws/chat/{sid}", headers={"X-API-Key": first, **upgrade_headers()}), 429, "connection_limit"
    )
    assert "3" in body["detail"] and "per credential" in body["detail"]
    held += [await client.ws_connect(f"/ws/chat/{sid}", headers={"X-API-Key": second}) for _ in range(2)]
    body = await assert_error(
        await client.get(f"/ws/chat/{sid}", headers={"X-API-Key": second, **upgrade_headers()}), 429, "connection_limit"
    )
    assert "5" in body["detail"] and "per tenant" in body["detail"]
    bob_sid = await _chat_session(client, auth, store, "bob")
    async with client.ws_connect(f"/ws/chat/{bob_sid}", headers=auth("bob")) as bobs:  # another tenant's count
        await bobs.send_json({"type": "ping"})
        assert (await bobs.receive_json(timeout=10))["type"] == "pong"
    await held.pop(0).close()  # a freed place is taken again
    deadline = time.monotonic() + 10
    while True:
        r = await client.get(f"/ws/chat/{sid}", headers={"X-API-Key": first, **upgrade_headers()})
        if r.status == 101:
            r.close()
            break
        assert r.status == 429 and time.monotonic() < deadline, "the closed socket's place was never freed"
        await asyncio.sleep(0.05)
    for ws in held:
        await ws.close()


@pytest.fixture
def redis_server(tmp_path):
    server = start_redis(tmp_path / "redis")
    yield server
    server.stop()


async def test_chat_caps_are_shared_by_api_nodes_through_redis(settings, store, auth, redis_server):
    shared = settings.with_(redis_url=redis_server.url, redis_timeout_seconds=10.0)
    other_store = Store(shared.database_path)
    try:
        async with (
            TestClient(TestServer(create_app(shared, store=store), host="127.0.0.1")) as a,
            TestClient(TestServer(create_app(shared, store=other_store), host="127.0.0.1")) as b,
        ):
            headers = {"Authorization": f"Bearer {a.app[ISSUER].issue('alice')}"}
            seed_agent(store, "alice", name="Front Desk")
            r = await a.post(
                "/trigger-agent", json={"message": "Hi", "agent_slug": "front-desk", "mode": "text"}, headers=headers
            )
            sid = (await _json(r))["session_id"]
            held = [await a.ws_connect(f"/ws/chat/{sid}", headers=headers) for _ in range(2)]
            held.append(await b.ws_connect(f"/ws/chat/{sid}", headers=headers))
            for node in (a, b):
                await assert_error(
                    await node.get(f"/ws/chat/{sid}", headers={**headers, **upgrade_headers()}), 429, "connection_limit"
                )
            await held.pop().close()  # node b's place, freed in Redis
            deadline = time.monotonic() + 10
            while (r := await a.get(f"/ws/chat/{sid}", headers={**headers, **upgrade_headers()})).status != 101:
                assert r.status == 429 and time.monotonic() < deadline, "the place freed on node b never showed"
                await asyncio.sleep(0.05)
            r.close()
            for ws in held:
                await ws.close()
    finally:
        other_store.close()
