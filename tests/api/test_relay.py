"""Twilio ConversationRelay on /relay/ws: a test client that speaks Twilio's documented protocol and signs its
handshake like Twilio (X-Twilio-Signature, HMAC-SHA1 of the URL with the tenant's auth token), the agent's LLM on
the Gemini fake, the call recorded, metered and analysed. The API sits behind a proxy at a public URL: each call
opens a one-time URL minted for it (POST /api/relay/urls), and every refusal comes before the websocket upgrade."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import os

import aiohttp
import pytest
from aiohttp.test_utils import TestClient, TestServer

from api.app import create_app
from core.store import tenants as tenants_repo
from core.store.db import Store
from tests.api.chat_support import fakes, idle_seconds, llm_requests, texts, wait_session  # noqa: F401  (fixtures, found by pytest by name)
from tests.api.chat_support import settings as chat_settings  # noqa: F401  (fixtures, found by pytest by name)
from tests.api.seed import ANALYSIS, seed_agent, tenant_of
from tests.conftest import assert_error, table_snapshot

ALICE_TOKEN = "alice-twilio-auth-token-0001"
BOB_TOKEN = "bob-twilio-auth-token-0002"
PUBLIC = "https://voice.example.com"  # where Twilio reaches the API (a proxy in front of the test server)


@pytest.fixture
def settings(chat_settings):
    return chat_settings.with_(public_url=PUBLIC)


def twilio_signature(auth_token: str, url: str) -> str:
    """As Twilio computes it (its RequestValidator): base64(HMAC-SHA1(auth token, URL + sorted POST params)); a
    websocket handshake has no parameters."""
    return base64.b64encode(hmac.new(auth_token.encode(), url.encode(), hashlib.sha1).digest()).decode()


def setup_message(**params) -> dict:
    return {
        "type": "setup",
        "sessionId": "VX" + "0" * 32,
        "accountSid": "AC" + "1" * 32,
        "parentCallSid": "",
        "callSid": "CA" + "2" * 32,
        "from": "+15551230001",
        "to": "+15551230002",
        "forwardedFrom": "",
        "callType": "PSTN",
        "callerName": "",
        "direction": "inbound",
        "callStatus": "RINGING",
        "customParameters": params,
    }


@pytest.fixture
async def twilio_tokens(client, auth):
    for user, token in (("alice", ALICE_TOKEN), ("bob", BOB_TOKEN)):
        r = await client.put("/api/settings/twilio", json={"auth_token": token}, headers=auth(user))
        assert r.status == 200, await r.text()


async def relay_url(client, auth, user: str = "alice", **agent) -> str:
    """What the tenant's TwiML webhook asks for before it answers Twilio."""
    r = await client.post("/api/relay/urls", json=agent or {"agent_slug": "front-desk"}, headers=auth(user))
    assert r.status == 201, await r.text()
    body = await r.json()
    assert body["url"].startswith("wss://voice.example.com/relay/ws?ticket=") and body["expires_at"].endswith("Z")
    return body["url"]


def _path(url: str) -> str:
    """The public URL's path and query: what the proxy forwards to the test server."""
    return url[len("wss://voice.example.com") :]


def upgrade_headers(**extra) -> dict[str, str]:
    return {
        "Connection": "Upgrade",
        "Upgrade": "websocket",
        "Sec-WebSocket-Version": "13",
        "Sec-WebSocket-Key": base64.b64encode(os.urandom(16)).decode(),
        **extra,
    }


async def _relay(client, token: str, url: str, signature: str | None = None):
    return await client.ws_connect(
        _path(url), headers={"X-Twilio-Signature": signature or twilio_signature(token, url)}
    )


async def _refused(client, path: str, signature: str, status: int = 403, **headers) -> dict:
    """A handshake answered with an error body, never upgraded."""
    r = await client.get(path, headers=upgrade_headers(**{"X-Twilio-Signature": signature, **headers}))
    return await assert_error(r, status)


async def _reply(ws) -> str:
    """Text tokens until the one with last: true."""
    tokens = []
    async with asyncio.timeout(20):
        while True:
            msg = await ws.receive_json()
            assert msg["type"] == "text", msg
            tokens.append(msg["token"])
            if msg["last"]:
                return "".join(tokens)


async def test_the_twilio_auth_token_is_write_only_and_sealed_at_rest(client, auth, settings):
    r = await client.get("/api/settings/twilio", headers=auth("alice"))
    assert (await r.json()) == {"configured": False, "auth_token": None, "updated_at": None}
    r = await client.put("/api/settings/twilio", json={"auth_token": ALICE_TOKEN}, headers=auth("alice"))
    body = await r.json()
    assert r.status == 200 and body["configured"] and body["auth_token"] == "****" + ALICE_TOKEN[-4:]
    r = await client.get("/api/settings/twilio", headers=auth("alice"))
    assert (await r.json())["auth_token"] == "****0001"
    assert ALICE_TOKEN not in str(table_snapshot(settings))
    r = await client.get("/api/settings/twilio", headers=auth("bob"))
    assert (await r.json())["configured"] is False
    await assert_error(await client.put("/api/settings/twilio", json={"auth_token": ""}, headers=auth("alice")), 422)


async def test_a_relay_call_is_answered_by_the_agent_recorded_metered_and_analysed(
    client, auth, store, fakes, twilio_tokens
):
    agent = seed_agent(
        store,
        "alice",
        name="Front Desk",
        systemPrompt="You are the front desk.",
        firstMessage="Lakeside clinic, how can I help?",
        firstMessageMode="assistant_speaks_first",
    )
    fakes.update_script(llm_chunks=3, llm_replies=["We open at nine.", "Booked for Monday."])
    async with await _relay(client, ALICE_TOKEN, await relay_url(client, auth)) as ws:
        await ws.send_json(setup_message(agent_slug="front-desk", order="A-12"))
        assert await _reply(ws) == "Lakeside clinic, how can I help?"  # the greeting
        await ws.send_json({"type": "prompt", "voicePrompt": "When do you", "lang": "en-US", "last": False})
        await ws.send_json({"type": "prompt", "voicePrompt": " open?", "lang": "en-US", "last": True})
        assert await _reply(ws) == "We open at nine."
        await ws.send_json({"type": "dtmf", "digit": "1"})
        assert await _reply(ws) == "Booked for Monday."
        await ws.send_json({"type": "error", "description": "Invalid message received"})  # logged, not fatal
    sessions = await (await client.get("/api/sessions?channel=relay", headers=auth("alice"))).json()
    assert sessions["total"] == 1
    sid = sessions["sessions"][0]["id"]
    s = await wait_session(client, auth, sid, lambda s: s["analysisStatus"] == "completed")
    assert s["agentId"] == agent["id"] and s["endReason"] == "completed" and s["analysis"] == ANALYSIS
    assert (s["user_id"], s["conversation_id"], s["direction"]) == ("+15551230001", "CA" + "2" * 32, "inbound")
    assert [(t["speaker"], t["content"], t["source"]) for t in s["transcript"]] == [
        ("AGENT", "Lakeside clinic, how can I help?", None),
        ("USER", "When do you open?", None),
        ("AGENT", "We open at nine.", None),
        ("USER", "1", "dtmf"),
        ("AGENT", "Booked for Monday.", None),
    ]
    dtmf_request = llm_requests(fakes)[-1]
    assert texts(dtmf_request)[-1] == ("user", "(The caller pressed 1 on the keypad.)")
    assert "A-12" in dtmf_request["systemInstruction"]["parts"][0]["text"]  # custom parameters: the call's context
    events = (await (await client.get(f"/api/sessions/{sid}/cost-breakdown", headers=auth("alice"))).json())["events"]
    counted = fakes.counters()["gemini"]
    assert sum(e["quantity"] for e in events if e["token_kind"] == "input") == counted["prompt_tokens"]
    assert sum(e["quantity"] for e in events if e["token_kind"] == "output") == counted["completion_tokens"]


async def test_a_caller_interrupting_keeps_what_was_heard_and_the_whole_reply_is_still_billed(
    client, auth, store, fakes, twilio_tokens
):
    seed_agent(store, "alice", name="Front Desk")
    fakes.update_script(
        llm_chunks=6, llm_chunk_delay_ms=150, llm_replies=["We are open from nine in the morning until five.", "Sure."]
    )
    url = await relay_url(client, auth, agent_id=await _agent_id(client, auth))
    async with await _relay(client, ALICE_TOKEN, url) as ws:
        await ws.send_json(setup_message())
        await ws.send_json({"type": "prompt", "voicePrompt": "When are you open?", "last": True})
        first = await ws.receive_json(timeout=20)
        assert first["type"] == "text" and first["last"] is False
        await ws.send_json(
            {"type": "interrupt", "utteranceUntilInterrupt": "We are open", "durationUntilInterruptMs": 460}
        )
        await ws.send_json({"type": "prompt", "voicePrompt": "Thanks, bye", "last": True})
        after = await _reply(ws)  # the interrupted reply says no more; the next one comes whole
    assert after.endswith("Sure.") and "until five" not in first["token"] + after
    sid = (await (await client.get("/api/sessions?channel=relay", headers=auth("alice"))).json())["sessions"][0]["id"]
    s = await wait_session(client, auth, sid, lambda s: s["status"] == "ended")
    agent_turns = [t for t in s["transcript"] if t["speaker"] == "AGENT"]
    assert (agent_turns[0]["content"], agent_turns[0]["interrupted"]) == ("We are open", True)
    assert texts(llm_requests(fakes)[1])[-2] == ("model", "We are open")  # the LLM knows what the caller heard
    events = (await (await client.get(f"/api/sessions/{sid}/cost-breakdown", headers=auth("alice"))).json())["events"]
    chat_output = sum(e["quantity"] for e in events if e["token_kind"] == "output" and "/chat/" in e["idempotency_key"])
    assert chat_output == len(["We", "are", "open", "from", "nine", "in", "the", "morning", "until", "five."]) + 1


async def _agent_id(client, auth) -> str:
    agents = await (await client.get("/api/v1/agents", headers=auth("alice"))).json()
    return agents[0]["id"]


async def test_a_bad_missing_or_host_derived_signature_is_refused_before_the_upgrade_and_nothing_is_created(
    client, auth, store, settings, twilio_tokens
):
    seed_agent(store, "alice", name="Front Desk", firstMessage="Hello!", firstMessageMode="assistant_speaks_first")
    url = await relay_url(client, auth)
    path = _path(url)
    before = table_snapshot(settings)
    await _refused(client, path, twilio_signature(BOB_TOKEN, url))  # another tenant's token
    await _refused(client, path, "bm90IGEgc2lnbmF0dXJl")  # junk
    await _refused(client, path, twilio_signature(ALICE_TOKEN, "wss://voice.example.com/relay/ws"))  # no ticket
    await _refused(client, "/relay/ws", twilio_signature(ALICE_TOKEN, "wss://voice.example.com/relay/ws"))
    await _refused(
        client, "/relay/ws?ticket=nope", twilio_signature(ALICE_TOKEN, "wss://voice.example.com/relay/ws?ticket=nope")
    )
    # signed for the URL as the request's Host header names it: the Host is the sender's choice, never trusted
    for host in (f"{client.host}:{client.port}", "attacker.example"):
        await _refused(client, path, twilio_signature(ALICE_TOKEN, f"ws://{host}{path}"), Host=host)
        await _refused(client, path, twilio_signature(ALICE_TOKEN, f"wss://{host}{path}"), Host=host)
    with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
        await client.ws_connect(path, headers={"X-Twilio-Signature": "bm90IGEgc2lnbmF0dXJl"})
    assert refused.value.status == 403
    r = await client.get(path, headers=upgrade_headers())
    await assert_error(r, 401)  # no signature: no upgrade
    assert table_snapshot(settings) == before
    async with await _relay(client, ALICE_TOKEN, url) as ws:  # the refusals did not use the URL up
        await ws.send_json(setup_message())
        assert await _reply(ws) == "Hello!"


async def test_a_relay_url_opens_one_call_and_a_replayed_signature_is_refused_on_any_node(
    client, auth, store, settings, twilio_tokens
):
    seed_agent(store, "alice", name="Front Desk", firstMessage="Hello!", firstMessageMode="assistant_speaks_first")
    url = await relay_url(client, auth)
    signature = twilio_signature(ALICE_TOKEN, url)
    other_store = Store(settings.database_path)
    try:
        async with TestClient(TestServer(create_app(settings, store=other_store), host="127.0.0.1")) as other:
            async with await _relay(client, ALICE_TOKEN, url) as ws:
                await ws.send_json(setup_message())
                assert await _reply(ws) == "Hello!"
                for node in (client, other):  # while the call is on, and after
                    await _refused(node, _path(url), signature)
            await _refused(other, _path(url), signature)
            # two handshakes racing on two nodes for one fresh URL: one call
            url = await relay_url(client, auth)
            signature = twilio_signature(ALICE_TOKEN, url)
            statuses = await asyncio.gather(
                *[
                    node.get(_path(url), headers=upgrade_headers(**{"X-Twilio-Signature": signature}))
                    for node in (client, other)
                ]
            )
            assert sorted(r.status for r in statuses) == [101, 403]
            for r in statuses:
                r.close()
    finally:
        other_store.close()
    sessions = await (await client.get("/api/sessions?channel=relay", headers=auth("alice"))).json()
    assert sessions["total"] == 1  # the race's winner sent no setup: no session
    # an expired URL is refused
    url = await relay_url(client, auth)
    store.write_sync(lambda db: db.execute("UPDATE relay_tickets SET expires_at = '2020-01-01T00:00:00.000000Z'"))
    await _refused(client, _path(url), twilio_signature(ALICE_TOKEN, url))


async def test_a_suspended_tenants_relay_call_is_refused_before_the_upgrade_with_no_session(
    client, auth, store, settings, twilio_tokens
):
    seed_agent(store, "alice", name="Front Desk")
    url = await relay_url(client, auth)

    def suspend(db):
        tenants_repo.ensure_personal(db, "alice")
        tenants_repo.update(db, tenant_of("alice"), {"status": "suspended"})

    store.write_sync(suspend)
    before = table_snapshot(settings)
    body = await _refused(client, _path(url), twilio_signature(ALICE_TOKEN, url))
    assert body["type"] == "tenant_suspended"
    assert table_snapshot(settings) == before


async def test_a_relay_url_is_for_an_agent_of_the_tenant_and_the_ticket_not_the_setup_names_the_agent(
    client, auth, store, fakes, twilio_tokens
):
    alice_agent = seed_agent(store, "alice", name="Front Desk")
    bob_agent = seed_agent(store, "bob", name="Front Desk")
    await assert_error(
        await client.post("/api/relay/urls", json={"agent_id": alice_agent["id"]}, headers=auth("bob")), 404
    )
    await assert_error(await client.post("/api/relay/urls", json={}, headers=auth("bob")), 422)
    await assert_error(
        await client.post("/api/relay/urls", json={"agent_slug": "front-desk"}, headers=auth("carol")), 404
    )
    seed_agent(store, "carol", name="Front Desk")
    await assert_error(
        await client.post("/api/relay/urls", json={"agent_slug": "front-desk"}, headers=auth("carol")), 409
    )  # no Twilio auth token to sign with
    url = await relay_url(client, auth, "bob")
    async with await _relay(client, BOB_TOKEN, url) as ws:
        await ws.send_json(setup_message(agent_id=alice_agent["id"], tenant_id=tenant_of("alice")))
        await ws.send_json({"type": "prompt", "voicePrompt": "Hello?", "last": True})
        assert await _reply(ws) == "This is a scripted reply."
    bobs = await (await client.get("/api/sessions?channel=relay", headers=auth("bob"))).json()
    alices = await (await client.get("/api/sessions?channel=relay", headers=auth("alice"))).json()
    assert bobs["total"] == 1 and bobs["sessions"][0]["agentId"] == bob_agent["id"] and alices["total"] == 0


async def test_a_disabled_agent_hands_the_call_back_to_twilio(client, auth, store, twilio_tokens):
    agent = seed_agent(store, "alice", name="Front Desk")
    url = await relay_url(client, auth)
    r = await client.put(f"/api/v1/agents/{agent['id']}", json={"enabled": False}, headers=auth("alice"))
    assert r.status == 200
    await assert_error(
        await client.post("/api/relay/urls", json={"agent_slug": "front-desk"}, headers=auth("alice")), 409
    )
    async with await _relay(client, ALICE_TOKEN, url) as ws:
        await ws.send_json(setup_message(agent_slug="front-desk"))
        msg = await ws.receive_json(timeout=10)
        assert msg["type"] == "end" and "agent_unavailable" in msg["handoffData"]


async def test_an_llm_failing_for_good_apologises_hands_the_call_back_and_ends_the_session_with_why(
    client, auth, store, fakes, twilio_tokens
):
    seed_agent(store, "alice", name="Front Desk", errorMessage="Sorry, we have a problem. Please call back.")
    fakes.update_script(failures={"gemini": {"mode": "reject", "times": 2}})  # the try and its one retry
    async with await _relay(client, ALICE_TOKEN, await relay_url(client, auth)) as ws:
        await ws.send_json(setup_message(agent_slug="front-desk"))
        await ws.send_json({"type": "prompt", "voicePrompt": "Hello?", "last": True})
        assert await _reply(ws) == "Sorry, we have a problem. Please call back."
        end = await ws.receive_json(timeout=10)
        assert end["type"] == "end" and '"reason": "error"' in end["handoffData"] and "gemini" in end["handoffData"]
    sid = (await (await client.get("/api/sessions?channel=relay", headers=auth("alice"))).json())["sessions"][0]["id"]
    s = await wait_session(client, auth, sid, lambda s: s["status"] == "ended")
    assert s["endReason"] == "error" and "gemini" in s["error"]
    assert [t["speaker"] for t in s["transcript"]] == ["USER", "AGENT"]  # the caller's words are kept


async def test_a_frame_nested_past_the_json_depth_limit_is_skipped_and_the_call_goes_on(
    client, auth, store, fakes, twilio_tokens, caplog
):
    # a few thousand levels used to raise RecursionError inside json.loads and kill the call's handler
    seed_agent(store, "alice", name="Front Desk", systemPrompt="You are the front desk.")
    fakes.update_script(llm_replies=["We open at nine."])
    async with await _relay(client, ALICE_TOKEN, await relay_url(client, auth)) as ws:
        await ws.send_str("[" * 5000 + "]" * 5000)  # before the setup: the call is refused cleanly, not crashed
        assert (await ws.receive()).type == aiohttp.WSMsgType.CLOSE
    async with await _relay(client, ALICE_TOKEN, await relay_url(client, auth)) as ws:
        await ws.send_json(setup_message(agent_slug="front-desk"))
        await ws.send_str('{"type": "prompt", "x": ' + "[" * 5000 + "]" * 5000 + "}")
        await ws.send_json({"type": "prompt", "voicePrompt": "When do you open?", "lang": "en-US", "last": True})
        assert await _reply(ws) == "We open at nine."
    assert "a relay message that is not JSON (or nests too deep)" in caplog.text
