"""Clients (Autonomite, 002): write-only secrets sealed at rest, their own LiveKit server for their agents' calls
and webhooks, X-Client-ID beside an API key."""

from __future__ import annotations

import base64
import hashlib
import json
import uuid

import pytest
from livekit import api as lk
from livekit.protocol import agent_dispatch as proto_dispatch

from tests.api.seed import AGENT_WIRE
from tests.api.twirp_stub import start_twirp_stub
from tests.conftest import LIVEKIT_KEY, assert_error, table_snapshot

CLIENT_KEY = "client-livekit-key"
CLIENT_SECRET = "client-livekit-secret-that-is-long-enough"
SUPABASE_SECRET = "supabase-service-role-key-0123456789"


@pytest.fixture
def settings(settings):
    """The clients' LiveKit servers here are stubs on loopback: listed, as an operator lists a host of its own."""
    return settings.with_(outbound_http_allowed_hosts=("127.0.0.1",))


@pytest.fixture
async def client_livekit():
    server, calls = await start_twirp_stub({})
    yield str(server.make_url("")).rstrip("/").replace("http://", "ws://"), calls
    await server.close()


def _body(url: str, **kw) -> dict:
    return {
        "id": "new-client",
        "name": "New Client",
        "domain": "newclient.example",
        "settings": {
            "supabase": {
                "url": "https://project.supabase.example",
                "anon_key": "anon-key-000000000",
                "service_role_key": SUPABASE_SECRET,
            },
            "livekit": {"server_url": url, "api_key": CLIENT_KEY, "api_secret": CLIENT_SECRET},
        },
        **kw,
    }


async def test_secrets_are_write_only_masked_and_sealed_at_rest(client, auth, settings, client_livekit):
    url, _ = client_livekit
    h = auth("alice")
    resp = await client.post("/api/v1/clients", json=_body(url), headers=h)
    assert resp.status == 201, await resp.text()
    made = await resp.json()
    livekit = made["settings"]["livekit"]
    assert livekit == {"server_url": url, "api_key": CLIENT_KEY, "api_secret": "****ough"}
    assert made["settings"]["supabase"]["service_role_key"] == "****6789"
    assert (made["id"], made["name"], made["domain"], made["active"]) == (
        "new-client",
        "New Client",
        "newclient.example",
        True,
    )
    assert await (await client.get("/api/v1/clients", headers=h)).json() == [made]
    assert await (await client.get("/api/v1/clients/new-client", headers=h)).json() == made
    snapshot = json.dumps(table_snapshot(settings), default=str)
    assert CLIENT_SECRET not in snapshot and SUPABASE_SECRET not in snapshot
    # the masked value sent back keeps the secret; a rename and deactivation apply
    put = await client.put(
        "/api/v1/clients/new-client",
        headers=h,
        json={"name": "Updated Client Name", "active": False, "settings": made["settings"]},
    )
    updated = await put.json()
    assert put.status == 200 and updated["name"] == "Updated Client Name" and updated["active"] is False
    assert updated["settings"] == made["settings"]
    await assert_error(await client.post("/api/v1/clients", json=_body(url), headers=h), 409)
    await assert_error(
        await client.post(
            "/api/v1/clients", json=_body(url, id="half", settings={"livekit": {"server_url": url}}), headers=h
        ),
        422,
    )
    # another tenant may use the same client id; it is theirs alone
    assert (await client.post("/api/v1/clients", json=_body(url), headers=auth("bob"))).status == 201
    await assert_error(await client.get("/api/v1/clients/new-client", headers=auth("mallory")), 404)


async def test_a_clients_agents_call_through_the_clients_livekit_server(client, auth, twirp_stub, client_livekit):
    url, client_calls = client_livekit
    _, product_calls = twirp_stub
    h = auth("alice")
    assert (await client.post("/api/v1/clients", json=_body(url), headers=h)).status == 201
    await assert_error(await client.post("/api/agents", json={**AGENT_WIRE, "clientId": "nope"}, headers=h), 422)
    agent = await (await client.post("/api/agents", json={**AGENT_WIRE, "clientId": "new-client"}, headers=h)).json()
    assert agent["clientId"] == "new-client"
    resp = await client.post("/api/livekit/token", json={"agentId": agent["id"], "roomName": "site-1"}, headers=h)
    assert resp.status == 200, await resp.text()
    body = await resp.json()
    assert body["serverUrl"] == url
    claims = lk.TokenVerifier(CLIENT_KEY, CLIENT_SECRET).verify(body["token"])
    assert claims.video.room == "site-1"
    assert [name for name, _ in client_calls] == ["CreateDispatch"] and product_calls == []
    req = proto_dispatch.CreateAgentDispatchRequest()
    req.ParseFromString(client_calls[0][1])
    assert req.room == "site-1" and json.loads(req.metadata)["session_id"] == body["sessionId"]

    # the client's server's webhooks are verified with its key
    event = {
        "event": "room_finished",
        "room": {"name": "site-1"},
        "id": f"EV_{uuid.uuid4().hex}",
        "createdAt": "1767225660",
    }
    raw = json.dumps(event)
    digest = base64.b64encode(hashlib.sha256(raw.encode()).digest()).decode()
    signed = lk.AccessToken(CLIENT_KEY, CLIENT_SECRET).with_sha256(digest).to_jwt()
    ok = await client.post("/api/livekit/webhook", data=raw, headers={"Authorization": signed})
    assert ok.status == 200, await ok.text()
    forged = lk.AccessToken(CLIENT_KEY, "not-the-clients-secret-000000000000").with_sha256(digest).to_jwt()
    await assert_error(await client.post("/api/livekit/webhook", data=raw, headers={"Authorization": forged}), 401)
    assert LIVEKIT_KEY != CLIENT_KEY

    # an inactive client's agents take no calls
    await client.put("/api/v1/clients/new-client", json={"active": False}, headers=h)
    await assert_error(await client.post("/api/livekit/token", json={"agentId": agent["id"]}, headers=h), 409)


async def test_an_api_key_with_x_client_id_must_name_a_client_of_its_tenant(client, auth, client_livekit):
    url, _ = client_livekit
    h = auth("alice")
    assert (await client.post("/api/v1/clients", json=_body(url), headers=h)).status == 201
    key = (await (await client.post("/api/keys", json={"name": "wp"}, headers=h)).json())["key"]
    ok = await client.get("/api/v1/agents", headers={"X-API-Key": key, "X-Client-ID": "new-client"})
    assert ok.status == 200, await ok.text()
    await assert_error(await client.get("/api/v1/agents", headers={"X-API-Key": key, "X-Client-ID": "other"}), 401)
