from __future__ import annotations

import base64
import hashlib
import json
import uuid

from livekit import api as lk
from livekit.protocol import agent_dispatch as proto_dispatch

from core.store import sessions as sessions_repo
from tests.api.seed import tenant_of
from tests.conftest import LIVEKIT_KEY, LIVEKIT_SECRET, assert_error, product_dispatch, table_snapshot

AGENT = {"name": "Support", "systemPrompt": "Be brief."}


async def _agent(client, h):
    return (await (await client.post("/api/agents", json=AGENT, headers=h)).json())["id"]


async def test_token_joins_the_room_and_dispatches_the_agent_with_its_ids(client, auth, twirp_stub, store, settings):
    _, calls = twirp_stub
    h = auth("alice")
    agent_id = await _agent(client, h)
    resp = await client.post("/api/livekit/token", json={"agentId": agent_id, "roomName": "support-1"}, headers=h)
    assert resp.status == 200, await resp.text()
    body = await resp.json()
    assert body["roomName"] == "support-1"
    claims = lk.TokenVerifier(LIVEKIT_KEY, LIVEKIT_SECRET).verify(body["token"])
    assert claims.video.room == "support-1" and claims.video.room_join and claims.video.can_publish
    assert claims.identity == body["identity"]
    ((_name, raw),) = calls
    req = proto_dispatch.CreateAgentDispatchRequest()
    req.ParseFromString(raw)
    assert req.room == "support-1" and req.agent_name == "voxarena"
    assert product_dispatch(settings, req.metadata) == {
        "agent_id": agent_id,
        "session_id": body["sessionId"],
        "owner_id": tenant_of("alice"),
        "direction": "inbound",
    }
    # reserved, but not a call until the job starts it
    assert (await (await client.get("/api/sessions", headers=h)).json())["total"] == 0
    row = store.read_sync(sessions_repo.get_row, body["sessionId"])
    assert row["status"] == "pending" and row["room_name"] == "support-1"


async def test_token_generates_a_room_name_when_none_is_given(client, auth):
    h = auth("alice")
    body = await (await client.post("/api/livekit/token", json={"agentId": await _agent(client, h)}, headers=h)).json()
    assert body["roomName"].startswith("vx-")


async def test_token_for_someone_elses_agent_is_404_and_dispatches_nothing(client, auth, twirp_stub, settings):
    _, calls = twirp_stub
    agent_id = await _agent(client, auth("alice"))
    before = table_snapshot(settings)
    await assert_error(
        await client.post("/api/livekit/token", json={"agentId": agent_id, "roomName": "r"}, headers=auth("bob")), 404
    )
    assert calls == [] and table_snapshot(settings) == before


async def test_a_room_in_use_by_another_user_is_refused(client, auth):
    a = await _agent(client, auth("alice"))
    b = await _agent(client, auth("bob"))
    assert (
        await client.post("/api/livekit/token", json={"agentId": a, "roomName": "shared"}, headers=auth("alice"))
    ).status == 200
    await assert_error(
        await client.post("/api/livekit/token", json={"agentId": b, "roomName": "shared"}, headers=auth("bob")),
        409,
        "conflict",
    )


def _signed(event: dict, *, secret: str = LIVEKIT_SECRET) -> tuple[str, str]:
    body = json.dumps(event)
    digest = base64.b64encode(hashlib.sha256(body.encode()).digest()).decode()
    token = lk.AccessToken(LIVEKIT_KEY, secret).with_sha256(digest).to_jwt()
    return body, token


async def test_webhook_ends_the_rooms_sessions_once_and_replays_change_nothing(client, auth, store, settings):
    h = auth("alice")
    agent_id = await _agent(client, h)
    sid = store.write_sync(
        lambda db: sessions_repo.create(
            db,
            owner_id=tenant_of("alice"),
            agent_id=agent_id,
            room_name="r1",
            status="active",
            started_at="2026-01-01T00:00:00.000000Z",
        )
    )
    event = {
        "event": "room_finished",
        "room": {"name": "r1"},
        "id": f"EV_{uuid.uuid4().hex}",
        "createdAt": "1767225660",
    }
    body, token = _signed(event)
    resp = await client.post(
        "/api/livekit/webhook", data=body, headers={"Authorization": token, "Content-Type": "application/webhook+json"}
    )
    assert resp.status == 200 and await resp.json() == {"received": True, "duplicate": False}
    s = await (await client.get(f"/api/sessions/{sid}", headers=h)).json()
    assert s["endedAt"] == "2026-01-01T00:01:00.000000Z" and s["duration"] == 60 and s["endReason"] == "room_finished"
    before = table_snapshot(settings)
    again = await client.post("/api/livekit/webhook", data=body, headers={"Authorization": token})
    assert await again.json() == {"received": True, "duplicate": True}
    assert table_snapshot(settings) == before


async def test_webhook_with_a_bad_or_missing_signature_is_401_and_writes_nothing(client, settings):
    event = {"event": "room_finished", "room": {"name": "r1"}, "id": "EV_1"}
    body, _ = _signed(event)
    _, forged = _signed(event, secret="another-secret-that-is-long-enough-0000")
    _, other_body_token = _signed({**event, "id": "EV_2"})
    before = table_snapshot(settings)
    for headers in ({}, {"Authorization": forged}, {"Authorization": other_body_token}, {"Authorization": "garbage"}):
        await assert_error(await client.post("/api/livekit/webhook", data=body, headers=headers), 401, "unauthorized")
    assert table_snapshot(settings) == before


async def test_with_no_worker_able_to_take_a_call_the_token_is_503_with_retry_after_and_nothing_is_created(
    settings, store, twirp_stub, auth
):
    from aiohttp.test_utils import TestClient, TestServer

    from api.app import create_app

    _, calls = twirp_stub
    reasons = ["1 calls running or starting, the most this worker takes is 1"]

    async def capacity() -> str | None:
        return reasons[0]

    async with TestClient(
        TestServer(create_app(settings, store=store, worker_capacity=capacity), host="127.0.0.1")
    ) as client:
        h = auth("alice")
        agent_id = await _agent(client, h)
        before = table_snapshot(settings)
        resp = await client.post("/api/livekit/token", json={"agentId": agent_id}, headers=h)
        body = await assert_error(resp, 503, "service_unavailable")
        assert resp.headers["Retry-After"] == "5" and "the most this worker takes is 1" in body["detail"]
        assert table_snapshot(settings) == before
        assert calls == []
        reasons[0] = None  # a slot frees up: the same request goes through
        resp = await client.post("/api/livekit/token", json={"agentId": agent_id}, headers=h)
        assert resp.status == 200 and [name for name, _ in calls] == ["CreateDispatch"]


async def test_room_finished_for_a_call_whose_job_never_started_ends_it_as_no_agent_available(client, auth, store):
    h = auth("alice")
    agent_id = await _agent(client, h)
    tok = await (
        await client.post("/api/livekit/token", json={"agentId": agent_id, "roomName": "lonely"}, headers=h)
    ).json()
    body, token = _signed(
        {
            "event": "room_finished",
            "room": {"name": "lonely"},
            "id": f"EV_{uuid.uuid4().hex}",
            "createdAt": "1767225660",
        }
    )
    assert (await client.post("/api/livekit/webhook", data=body, headers={"Authorization": token})).status == 200
    s = await (await client.get(f"/api/sessions/{tok['sessionId']}", headers=h)).json()
    assert s["status"] == "ended" and s["endReason"] == "no_agent_available", s
    assert "before any agent joined" in s["error"] and s["analysisStatus"] == "skipped" and s["analysis"] is None
