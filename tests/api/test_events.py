"""The live event stream (003's /events/ws) over real websockets, on the real app and a real SQLite file: events
written by the repositories (as a job process writes them) reach the tenant's subscribers in order, and nobody
else's; credentials by header or ?token=; ten connections per key; a slow consumer is dropped, never waited for."""

from __future__ import annotations

import asyncio
import base64
import logging
import os
import time
from typing import Any

import aiohttp
import pytest
from aiohttp import WSMsgType
from aiohttp.test_utils import TestClient, TestServer

from api.accesslog import RedactingAccessLogger
from api.app import create_app
from api.keys import EVENTS, ISSUER
from core.store import call_views
from core.store import events as events_repo
from core.store import sessions as sessions_repo
from tests.api.seed import AGENT_WIRE, seed_agent, tenant_of
from tests.conftest import assert_error

PHONE = "+15551234567"


@pytest.fixture
def settings(settings):
    return settings.with_(sip_outbound_trunk_id="ST_test")


def live_call(store, user: str) -> str:
    """A web call whose job has started: the repositories write call.started as the job's would."""
    agent = seed_agent(store, user)
    sid = store.write_sync(
        lambda db: sessions_repo.create(
            db, owner_id=tenant_of(user), agent_id=agent["id"], room_name=f"room-{os.urandom(4).hex()}"
        )
    )
    store.write_sync(lambda db: sessions_repo.mark_active(db, sid, job_id="AJ_1"))
    return sid


async def next_event(ws, timeout: float = 5.0) -> dict[str, Any]:
    msg = await ws.receive(timeout=timeout)
    assert msg.type == WSMsgType.TEXT, msg
    return msg.json()


async def events_until(ws, last_type: str, timeout: float = 10.0) -> list[dict[str, Any]]:
    deadline = time.monotonic() + timeout
    out: list[dict[str, Any]] = []
    while not out or out[-1]["type"] != last_type:
        out.append(await next_event(ws, max(0.1, deadline - time.monotonic())))
    return out


def upgrade_headers() -> dict[str, str]:
    return {
        "Connection": "Upgrade",
        "Upgrade": "websocket",
        "Sec-WebSocket-Version": "13",
        "Sec-WebSocket-Key": base64.b64encode(os.urandom(16)).decode(),
    }


async def api_key(client, auth, user: str) -> str:
    resp = await client.post("/api/keys", json={"name": "stream"}, headers=auth(user))
    assert resp.status == 201, await resp.text()
    return (await resp.json())["key"]


async def test_a_calls_events_arrive_in_order_by_header_query_token_and_api_key(client, auth, token_for, store):
    key = await api_key(client, auth, "alice")
    by_header = await client.ws_connect("/events/ws", headers=auth("alice"))
    by_query = await client.ws_connect(f"/events/ws?token={token_for('alice')}")
    by_key = await client.ws_connect(f"/events/ws?token={key}")
    by_key_header = await client.ws_connect("/events/ws", headers={"X-API-Key": key})
    sid = live_call(store, "alice")
    store.write_sync(
        lambda db: sessions_repo.append_item(
            db, session_id=sid, item_key="u1", speaker="USER", content="Where is my order?", timestamp="t"
        )
    )
    store.write_sync(
        lambda db: sessions_repo.append_item(
            db, session_id=sid, item_key="a1", speaker="AGENT", content="Let me look.", timestamp="t"
        )
    )
    store.write_sync(call_views.merge_context, tenant_of("alice"), sid, {"order": "A-1"})
    store.write_sync(lambda db: sessions_repo.end(db, sid, reason="participant_left"))
    for ws in (by_header, by_query, by_key, by_key_header):
        got = await events_until(ws, "call.ended")
        assert [e["type"] for e in got] == [
            "call.started",
            "transcript.final",
            "transcript.final",
            "context.updated",
            "call.ended",
        ]
        assert {e["call_sid"] for e in got} == {sid}
        assert [e["id"] for e in got] == sorted(e["id"] for e in got)
        assert all(e["timestamp"].endswith("Z") for e in got)
        assert (got[1]["speaker"], got[1]["text"], got[2]["speaker"], got[2]["text"]) == (
            "user",
            "Where is my order?",
            "agent",
            "Let me look.",
        )
        assert got[3]["context"] == {"order": "A-1"}
        assert got[4]["reason"] == "participant_left" and isinstance(got[4]["duration"], int)
        await ws.close()
    # the same events stay listed for the call afterwards
    listed = await (await client.get(f"/api/calls/{sid}/events", headers=auth("alice"))).json()
    assert [e["type"] for e in listed["events"]] == [e["type"] for e in got]
    page = await (
        await client.get(f"/api/calls/{sid}/events?after={got[1]['id']}&limit=2", headers=auth("alice"))
    ).json()
    assert [e["id"] for e in page["events"]] == [got[2]["id"], got[3]["id"]]


async def test_without_credentials_or_upgrade_the_stream_is_refused_with_the_error_body(client, auth):
    await assert_error(await client.get("/events/ws", headers=upgrade_headers()), 401)
    await assert_error(await client.get("/events/ws?token=nope", headers=upgrade_headers()), 401)
    await assert_error(await client.get("/events/ws?token=vxa_nope", headers=upgrade_headers()), 401)
    await assert_error(await client.get("/events/ws", headers=auth("alice")), 400)
    # ?token= is a websocket-only way in: the API routes keep asking for a header
    await assert_error(await client.get("/api/agents?token=x"), 401)


async def test_the_eleventh_connection_of_a_key_is_refused_and_a_freed_place_is_taken_again(client, auth, store):
    key = await api_key(client, auth, "alice")
    open_ = [await client.ws_connect(f"/events/ws?token={key}") for _ in range(10)]
    body = await assert_error(
        await client.get(f"/events/ws?token={key}", headers=upgrade_headers()), 429, "connection_limit"
    )
    assert "10" in body["detail"]
    with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
        await client.ws_connect("/events/ws", headers={"X-API-Key": key})
    assert refused.value.status == 429
    other = await client.ws_connect("/events/ws", headers=auth("alice"))  # a user's own count is apart
    await other.close()
    await open_.pop().close()
    key_id = (await (await client.get("/api/keys", headers=auth("alice"))).json())["keys"][0]["id"]
    deadline = time.monotonic() + 5
    while client.app[EVENTS].connections.get(f"key:{key_id}", 0) >= 10:
        assert time.monotonic() < deadline, "the closed connection was never released"
        await asyncio.sleep(0.02)
    open_.append(await client.ws_connect(f"/events/ws?token={key}"))
    for ws in open_:
        await ws.close()


async def test_another_tenants_call_is_a_404_and_its_events_never_arrive(client, auth, store):
    alice_call = live_call(store, "alice")
    await assert_error(
        await client.get(f"/events/ws?call_sid={alice_call}", headers={**auth("bob"), **upgrade_headers()}), 404
    )
    await assert_error(await client.get(f"/api/calls/{alice_call}/events", headers=auth("bob")), 404)
    await assert_error(
        await client.get("/events/ws?call_sid=nope", headers={**auth("alice"), **upgrade_headers()}), 404
    )
    bob_all = await client.ws_connect("/events/ws", headers=auth("bob"))
    alice_one = await client.ws_connect(f"/events/ws?call_sid={alice_call}", headers=auth("alice"))
    alice_other = live_call(store, "alice")
    store.write_sync(
        lambda db: sessions_repo.append_item(
            db, session_id=alice_call, item_key="u1", speaker="USER", content="secret", timestamp="t"
        )
    )
    store.write_sync(lambda db: sessions_repo.end(db, alice_other, reason="participant_left"))
    store.write_sync(lambda db: sessions_repo.end(db, alice_call, reason="participant_left"))
    bob_call = live_call(store, "bob")  # written last: when bob sees it, alice's events had their chance
    first = await next_event(bob_all)
    assert (first["type"], first["call_sid"]) == ("call.started", bob_call)
    got = await events_until(alice_one, "call.ended")
    assert {e["call_sid"] for e in got} == {alice_call}  # the filter: not her other call
    assert [e["type"] for e in got] == ["transcript.final", "call.ended"]
    await bob_all.close()
    await alice_one.close()


async def test_a_slow_consumer_is_closed_with_4008_while_writers_and_other_subscribers_go_on(settings, store, auth):
    app = create_app(settings.with_(event_queue_size=40), store=store)
    async with TestClient(TestServer(app, host="127.0.0.1")) as client:
        hub = client.app[EVENTS]
        flooded, quiet = live_call(store, "alice"), live_call(store, "alice")
        token = client.app[ISSUER].issue("alice")
        slow = await client.ws_connect(f"/events/ws?call_sid={flooded}&token={token}")  # never reads
        other = await client.ws_connect(f"/events/ws?call_sid={quiet}&token={token}")
        owner = tenant_of("alice")
        blob = "x" * 16_000
        slowest_write = 0.0
        deadline = time.monotonic() + 60
        while hub.dropped_count == 0:  # until the socket's buffers and the queue are full
            assert time.monotonic() < deadline, "the slow consumer was never dropped"
            started = time.monotonic()
            store.write_sync(
                lambda db: [
                    events_repo.emit(
                        db,
                        owner_id=owner,
                        call_sid=flooded,
                        event_type="transcript.partial",
                        payload={"speaker": "user", "text": blob},
                    )
                    for _ in range(100)
                ]
            )
            slowest_write = max(slowest_write, time.monotonic() - started)
            await asyncio.sleep(0.15)
        assert slowest_write < 5.0  # a write never waits for a consumer
        store.write_sync(lambda db: sessions_repo.end(db, quiet, reason="participant_left"))
        assert (await next_event(other))["type"] == "call.ended"  # the others still get theirs
        received, closed = 0, None
        while closed is None:
            msg = await slow.receive(timeout=15)
            if msg.type == WSMsgType.TEXT:
                received += 1
            else:
                closed = msg
        assert closed.type == WSMsgType.CLOSE and closed.data == 4008 and closed.extra == "slow consumer", closed
        assert hub.subscribers == {s for s in hub.subscribers if s.call_sid == quiet}
        await other.close()


async def test_override_commands_are_recorded_as_call_events_with_who_sent_them(client, auth, store, twirp_stub):
    h = auth("alice")
    key = await api_key(client, auth, "alice")
    agent = await (await client.post("/api/agents", json=AGENT_WIRE, headers=h)).json()
    phone = await (await client.post(f"/api/agents/{agent['id']}/call", json={"to_number": PHONE}, headers=h)).json()
    sid = phone["call_sid"]
    store.write_sync(lambda db: sessions_repo.mark_active(db, sid, job_id="j1"))
    stream = await client.ws_connect(f"/events/ws?call_sid={sid}", headers=h)
    assert (
        await client.post("/api/override/text", json={"call_sid": sid, "text": "Please hold."}, headers=h)
    ).status == 200
    assert (
        await client.post("/api/override/dtmf", json={"call_sid": sid, "digit": "5"}, headers={"X-API-Key": key})
    ).status == 200
    await assert_error(await client.post("/api/override/dtmf", json={"call_sid": sid, "digit": "55"}, headers=h), 422)
    assert (
        await client.post("/api/override/transfer", json={"call_sid": sid, "target": "+15550002222"}, headers=h)
    ).status == 200
    assert (await client.post("/api/override/end", json={"call_sid": sid}, headers=h)).status == 200
    live = await events_until(stream, "call.updated")
    assert [e["type"] for e in live] == [
        "override.text",
        "override.dtmf",
        "override.transfer",
        "override.end",
        "call.updated",
    ]
    assert live[2]["target"] == "+15550002222"
    assert live[-1]["call_status"] == "FAILED" and live[-1]["status"] == "failed"
    listed = (await (await client.get(f"/api/calls/{sid}/events", headers=h)).json())["events"]
    by_type = {e["type"]: e for e in listed}
    assert [e["type"] for e in listed] == [
        "call.started",
        "call.updated",
        "override.text",
        "override.dtmf",
        "override.transfer",
        "override.end",
        "call.updated",
    ]
    assert by_type["override.text"]["text"] == "Please hold." and by_type["override.text"]["sent_by"] == "alice"
    assert by_type["override.text"]["key_id"] is None
    dtmf = by_type["override.dtmf"]
    assert dtmf["digit"] == "5" and dtmf["key_id"] and dtmf["sent_by"] == f"key:{dtmf['key_id']}"
    assert listed[1]["call_status"] == "RINGING"
    await stream.close()


async def test_the_stream_pings_so_a_dead_peer_is_noticed(settings, store):
    app = create_app(settings.with_(event_heartbeat_seconds=0.3), store=store)
    async with TestClient(TestServer(app, host="127.0.0.1")) as client:
        token = client.app[ISSUER].issue("alice")
        ws = await client.ws_connect(f"/events/ws?token={token}", autoping=False)
        msg = await ws.receive(timeout=5)
        assert msg.type == WSMsgType.PING
        await ws.close()


async def test_old_events_are_pruned_after_the_retention(client, store):
    sid = live_call(store, "alice")
    store.write_sync(
        lambda db: events_repo.emit(
            db,
            owner_id=tenant_of("alice"),
            call_sid=sid,
            event_type="error",
            payload={"detail": "old"},
            at="2020-01-01T00:00:00.000000Z",
        )
    )
    assert await client.app[EVENTS].prune_once() == 1
    kept = store.read_sync(lambda db: events_repo.for_call(db, tenant_of("alice"), sid, limit=100))
    assert [e["type"] for e in kept] == ["call.started"]


async def test_the_query_token_never_reaches_the_access_log(settings, store, caplog):
    app = create_app(settings, store=store)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server(access_log_class=RedactingAccessLogger)  # the runner's, as worker/server.py passes it
    async with TestClient(server) as client:
        token = client.app[ISSUER].issue("alice")
        with caplog.at_level(logging.INFO, logger="aiohttp.access"):
            ws = await client.ws_connect(f"/events/ws?token={token}")
            await ws.close()
            await client.get(f"/events/ws?token={token}")
            deadline = time.monotonic() + 5
            while "/events/ws?token=***" not in caplog.text:
                assert time.monotonic() < deadline, caplog.text
                await asyncio.sleep(0.02)
    assert token not in caplog.text


async def test_text_chats_are_not_calls_and_stay_off_the_stream_while_relay_calls_are_on_it(client, store):
    agent = seed_agent(store, "alice")
    owner = tenant_of("alice")
    chat = store.write_sync(
        lambda db: sessions_repo.create(db, owner_id=owner, agent_id=agent["id"], channel="text", status="active")
    )
    store.write_sync(
        lambda db: sessions_repo.append_item(
            db, session_id=chat, item_key="u1", speaker="USER", content="hi", timestamp="t"
        )
    )
    store.write_sync(lambda db: sessions_repo.end(db, chat, reason="closed"))
    relay = store.write_sync(
        lambda db: sessions_repo.create(db, owner_id=owner, agent_id=agent["id"], channel="relay", status="active")
    )
    store.write_sync(lambda db: sessions_repo.end(db, relay, reason="completed"))

    def listed(sid):
        return [e["type"] for e in store.read_sync(lambda db: events_repo.for_call(db, owner, sid, limit=100))]

    assert listed(chat) == []
    assert listed(relay) == ["call.started", "call.ended"]
