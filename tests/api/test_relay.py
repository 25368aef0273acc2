"""Twilio ConversationRelay on /relay/ws: a test client that speaks Twilio's documented protocol and signs its
handshake like Twilio (X-Twilio-Signature, HMAC-SHA1 of the URL with the tenant's auth token), the agent's LLM on
the Gemini fake, the call recorded, metered and analysed."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac

import aiohttp
import pytest

from tests.api.seed import ANALYSIS, seed_agent, tenant_of
from tests.api.chat_support import fakes, idle_seconds, settings  # noqa: F401  (the app on the Gemini fake)
from tests.api.chat_support import llm_requests, texts, wait_session
from tests.conftest import assert_error, table_snapshot

ALICE_TOKEN = "alice-twilio-auth-token-0001"
BOB_TOKEN = "bob-twilio-auth-token-0002"


def twilio_signature(auth_token: str, url: str) -> str:
    """As Twilio computes it (its RequestValidator): base64(HMAC-SHA1(auth token, URL + sorted POST params)); a
    websocket handshake has no parameters."""
    return base64.b64encode(hmac.new(auth_token.encode(), url.encode(), hashlib.sha1).digest()).decode()


def setup_message(**params) -> dict:
    return {"type": "setup", "sessionId": "VX" + "0" * 32, "accountSid": "AC" + "1" * 32, "parentCallSid": "",
            "callSid": "CA" + "2" * 32, "from": "+15551230001", "to": "+15551230002", "forwardedFrom": "",
            "callType": "PSTN", "callerName": "", "direction": "inbound", "callStatus": "RINGING",
            "customParameters": params}


@pytest.fixture
async def twilio_tokens(client, auth):
    for user, token in (("alice", ALICE_TOKEN), ("bob", BOB_TOKEN)):
        r = await client.put("/api/settings/twilio", json={"auth_token": token}, headers=auth(user))
        assert r.status == 200, await r.text()


def _url(client, query: str = "") -> str:
    return f"ws://{client.host}:{client.port}/relay/ws{query}"


async def _relay(client, token: str, query: str = "", signature: str | None = None):
    url = _url(client, query)
    return await client.ws_connect(f"/relay/ws{query}",
                                   headers={"X-Twilio-Signature": signature or twilio_signature(token, url)})


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
    assert ALICE_TOKEN not in str(table_snapshot(settings.database_path))
    r = await client.get("/api/settings/twilio", headers=auth("bob"))
    assert (await r.json())["configured"] is False
    await assert_error(await client.put("/api/settings/twilio", json={"auth_token": ""}, headers=auth("alice")), 422)


async def test_a_relay_call_is_answered_by_the_agent_recorded_metered_and_analysed(client, auth, store, fakes,
                                                                                twilio_tokens):
    agent = seed_agent(store, "alice", name="Front Desk", systemPrompt="You are the front desk.",
                       firstMessage="Lakeside clinic, how can I help?", firstMessageMode="assistant_speaks_first")
    fakes.update_script(llm_chunks=3, llm_replies=["We open at nine.", "Booked for Monday."])
    async with await _relay(client, ALICE_TOKEN, "?source=test") as ws:
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
        ("AGENT", "Lakeside clinic, how can I help?", None), ("USER", "When do you open?", None),
        ("AGENT", "We open at nine.", None), ("USER", "1", "dtmf"), ("AGENT", "Booked for Monday.", None)]
    dtmf_request = llm_requests(fakes)[-1]
    assert texts(dtmf_request)[-1] == ("user", "(The caller pressed 1 on the keypad.)")
    assert "A-12" in dtmf_request["systemInstruction"]["parts"][0]["text"]  # custom parameters: the call's context
    events = (await (await client.get(f"/api/sessions/{sid}/cost-breakdown", headers=auth("alice"))).json())["events"]
    counted = fakes.counters()["gemini"]
    assert sum(e["quantity"] for e in events if e["token_kind"] == "input") == counted["prompt_tokens"]
    assert sum(e["quantity"] for e in events if e["token_kind"] == "output") == counted["completion_tokens"]


async def test_a_caller_interrupting_keeps_what_was_heard_and_the_whole_reply_is_still_billed(client, auth, store,
                                                                                           fakes, twilio_tokens):
    seed_agent(store, "alice", name="Front Desk")
    fakes.update_script(llm_chunks=6, llm_chunk_delay_ms=150,
                        llm_replies=["We are open from nine in the morning until five.", "Sure."])
    async with await _relay(client, ALICE_TOKEN) as ws:
        await ws.send_json(setup_message(agent_id=(await _agent_id(client, auth))))
        await ws.send_json({"type": "prompt", "voicePrompt": "When are you open?", "last": True})
        first = await ws.receive_json(timeout=20)
        assert first["type"] == "text" and first["last"] is False
        await ws.send_json({"type": "interrupt", "utteranceUntilInterrupt": "We are open",
                            "durationUntilInterruptMs": 460})
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
    assert chat_output == len("We are open from nine in the morning until five.".split()) + 1


async def _agent_id(client, auth) -> str:
    agents = await (await client.get("/api/v1/agents", headers=auth("alice"))).json()
    return agents[0]["id"]


async def test_a_bad_or_missing_signature_is_refused_before_anything_is_created_or_sent(client, auth, store,
                                                                                     settings, twilio_tokens):
    seed_agent(store, "alice", name="Front Desk", firstMessage="Hello!", firstMessageMode="assistant_speaks_first")
    before = table_snapshot(settings.database_path)
    for token, signature in ((BOB_TOKEN, None), (ALICE_TOKEN, "bm90IGEgc2lnbmF0dXJl")):
        async with await _relay(client, token, signature=signature) as ws:
            await ws.send_json(setup_message(agent_slug="front-desk"))
            msg = await ws.receive(timeout=10)
            assert msg.type == aiohttp.WSMsgType.CLOSE and ws.close_code == 4403, msg
    # signed for another URL (a replay against this endpoint with other parameters)
    async with await _relay(client, ALICE_TOKEN, "?a=1", signature=twilio_signature(ALICE_TOKEN, _url(client))) as ws:
        await ws.send_json(setup_message(agent_slug="front-desk"))
        assert (await ws.receive(timeout=10)).type == aiohttp.WSMsgType.CLOSE and ws.close_code == 4403
    async with await _relay(client, ALICE_TOKEN) as ws:  # a signed call naming no agent of the tenant
        await ws.send_json(setup_message(agent_slug="nobody"))
        assert (await ws.receive(timeout=10)).type == aiohttp.WSMsgType.CLOSE and ws.close_code == 4403
    r = await client.get("/relay/ws", headers={"Connection": "Upgrade", "Upgrade": "websocket",
                                               "Sec-WebSocket-Version": "13",
                                               "Sec-WebSocket-Key": base64.b64encode(b"0" * 16).decode()})
    await assert_error(r, 401)  # no signature: no upgrade
    assert table_snapshot(settings.database_path) == before


async def test_a_slug_two_tenants_use_belongs_to_the_tenant_whose_token_signed_the_call(client, auth, store, fakes,
                                                                                      twilio_tokens):
    seed_agent(store, "alice", name="Front Desk")
    bob_agent = seed_agent(store, "bob", name="Front Desk")
    async with await _relay(client, BOB_TOKEN) as ws:
        await ws.send_json(setup_message(agent_slug="front-desk"))
        await ws.send_json({"type": "prompt", "voicePrompt": "Hello?", "last": True})
        assert await _reply(ws) == "This is a scripted reply."
    bobs = await (await client.get("/api/sessions?channel=relay", headers=auth("bob"))).json()
    alices = await (await client.get("/api/sessions?channel=relay", headers=auth("alice"))).json()
    assert bobs["total"] == 1 and bobs["sessions"][0]["agentId"] == bob_agent["id"] and alices["total"] == 0
    assert tenant_of("bob") != tenant_of("alice")


async def test_a_disabled_agent_hands_the_call_back_to_twilio(client, auth, store, twilio_tokens):
    agent = seed_agent(store, "alice", name="Front Desk")
    r = await client.put(f"/api/v1/agents/{agent['id']}", json={"enabled": False}, headers=auth("alice"))
    assert r.status == 200
    async with await _relay(client, ALICE_TOKEN) as ws:
        await ws.send_json(setup_message(agent_slug="front-desk"))
        msg = await ws.receive_json(timeout=10)
        assert msg["type"] == "end" and "agent_unavailable" in msg["handoffData"]


async def test_an_llm_failing_for_good_apologises_hands_the_call_back_and_ends_the_session_with_why(
        client, auth, store, fakes, twilio_tokens):
    seed_agent(store, "alice", name="Front Desk", errorMessage="Sorry, we have a problem. Please call back.")
    fakes.update_script(failures={"gemini": {"mode": "reject", "times": 2}})  # the try and its one retry
    async with await _relay(client, ALICE_TOKEN) as ws:
        await ws.send_json(setup_message(agent_slug="front-desk"))
        await ws.send_json({"type": "prompt", "voicePrompt": "Hello?", "last": True})
        assert await _reply(ws) == "Sorry, we have a problem. Please call back."
        end = await ws.receive_json(timeout=10)
        assert end["type"] == "end" and '"reason": "error"' in end["handoffData"] and "gemini" in end["handoffData"]
    sid = (await (await client.get("/api/sessions?channel=relay", headers=auth("alice"))).json())["sessions"][0]["id"]
    s = await wait_session(client, auth, sid, lambda s: s["status"] == "ended")
    assert s["endReason"] == "error" and "gemini" in s["error"]
    assert [t["speaker"] for t in s["transcript"]] == ["USER", "AGENT"]  # the caller's words are kept
