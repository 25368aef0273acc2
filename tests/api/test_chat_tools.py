"""An agent's HTTP tools in text chat (/trigger-agent): the real Gemini plugin against the Gemini fake, which calls
the tool; the tool's request reaches a business API on loopback (allowed by VOXARENA_OUTBOUND_HTTP_ALLOWED_HOSTS),
its answer goes back to the LLM, the reply is built from it, every LLM request is metered, and the session lists
the tool call."""

from __future__ import annotations

import dataclasses

import pytest

from tests.api.chat_support import fakes, idle_seconds, llm_requests  # noqa: F401  (fixtures, found by pytest by name)
from tests.api.chat_support import settings as chat_settings  # noqa: F401
from tests.api.seed import AGENT_WIRE
from tests.api.test_relay import ALICE_TOKEN, PUBLIC, _relay, _reply, relay_url, setup_message, twilio_tokens  # noqa: F401
from tests.harness.tool_server import ToolServer, verify

SCHEMA = {"type": "object", "properties": {"time": {"type": "string"}}, "required": ["time"]}


@pytest.fixture
def settings(chat_settings):
    return dataclasses.replace(chat_settings, outbound_http_allowed_hosts=("127.0.0.1",), public_url=PUBLIC)


@pytest.fixture
async def business():
    server = await ToolServer(slow_seconds=10).start()
    yield server
    await server.close()


async def _agent_with(client, auth, **tool) -> str:
    body = {
        **AGENT_WIRE,
        "name": "Front Desk",
        "tools": [{"type": "http", "name": "book_slot", "description": "Book.", "parameters": SCHEMA, **tool}],
    }
    resp = await client.post("/api/agents", json=body, headers=auth("alice"))
    assert resp.status == 201, await resp.text()
    return (await resp.json())["slug"]


async def _say(client, auth, slug: str, message: str) -> dict:
    resp = await client.post(
        "/trigger-agent",
        json={"message": message, "agent_slug": slug, "user_id": "u-1", "mode": "text"},
        headers=auth("alice"),
    )
    assert resp.status == 200, await resp.text()
    return await resp.json()


def _function_responses(request: dict) -> list[dict]:
    return [p["functionResponse"] for c in request["contents"] for p in c["parts"] if "functionResponse" in p]


async def test_a_text_turn_calls_the_tool_and_answers_from_its_result(client, auth, fakes, business):
    slug = await _agent_with(client, auth, url=business.url("/book"), headers={"Authorization": "Bearer t-1"})
    fakes.update_script(
        llm_tool_calls=[{"name": "book_slot", "args": {"time": "10:30"}}],
        llm_replies=["You are booked at 10:30, reference BK-1042."],
    )
    said = await _say(client, auth, slug, "Book me at half past ten")
    assert said["response"] == "You are booked at 10:30, reference BK-1042."

    [seen] = business.on("/book")
    assert seen.json() == {"time": "10:30"} and seen.headers["Authorization"] == "Bearer t-1"
    secret = (await (await client.get("/api/calls/callback-secret", headers=auth("alice"))).json())["secret"]
    assert verify(secret, seen.headers["X-Voxarena-Signature"], seen.body)

    first, second = llm_requests(fakes)[-2:]
    assert [f["name"] for t in first["tools"] for f in t["functionDeclarations"]] == ["book_slot"]
    [answer] = _function_responses(second)
    assert answer["name"] == "book_slot" and "BK-1042" in str(answer["response"])

    session = await (await client.get(f"/api/sessions/{said['session_id']}", headers=auth("alice"))).json()
    [call] = session["toolCalls"]
    assert (call["name"], call["type"], call["status"], call["httpStatus"]) == ("book_slot", "http", "ok", 200)
    assert call["arguments"] == {"time": "10:30"} and "BK-1042" in call["result"]
    assert [t["speaker"] for t in session["transcript"]] == ["USER", "AGENT"]

    # both LLM requests of the turn are in the ledger, exactly as the fake counted them
    counted = fakes.counters()["gemini"]
    breakdown = await (
        await client.get(f"/api/sessions/{said['session_id']}/cost-breakdown", headers=auth("alice"))
    ).json()
    assert len({e["idempotency_key"] for e in breakdown["events"] if e["token_kind"] == "input"}) == 2
    tokens = {k: sum(e["quantity"] for e in breakdown["events"] if e["token_kind"] == k) for k in ("input", "output")}
    assert tokens == {"input": counted["prompt_tokens"], "output": counted["completion_tokens"]}


async def test_a_tool_that_times_out_gives_the_llm_an_error_and_the_turn_still_answers(client, auth, fakes, business):
    slug = await _agent_with(client, auth, url=business.url("/slow"), timeoutMs=300)
    fakes.update_script(llm_tool_calls=[{"name": "book_slot", "args": {"time": "9"}}])
    said = await _say(client, auth, slug, "Book me at nine")
    assert "did not answer within 0.3 s" in said["response"]  # the fake quotes what the tool returned
    session = await (await client.get(f"/api/sessions/{said['session_id']}", headers=auth("alice"))).json()
    assert [c["status"] for c in session["toolCalls"]] == ["timeout"]


async def test_a_conversationrelay_call_uses_the_same_tools_and_fills_its_greeting(
    client, auth, fakes, business, twilio_tokens
):
    body = {
        **AGENT_WIRE,
        "name": "Front Desk",
        "firstMessage": "Hello {{customer}}, front desk.",
        "firstMessageMode": "assistant_speaks_first",
        "tools": [{"type": "http", "name": "book_slot", "parameters": SCHEMA, "url": business.url("/book")}],
    }
    assert (await client.post("/api/agents", json=body, headers=auth("alice"))).status == 201
    fakes.update_script(
        llm_tool_calls=[{"name": "book_slot", "args": {"time": "9:00"}}], llm_replies=["Booked at nine."]
    )
    async with await _relay(client, ALICE_TOKEN, await relay_url(client, auth)) as ws:
        await ws.send_json(setup_message(agent_slug="front-desk", customer="Ada"))
        assert await _reply(ws) == "Hello Ada, front desk."
        await ws.send_json({"type": "prompt", "voicePrompt": "Book me at nine", "lang": "en-US", "last": True})
        assert await _reply(ws) == "Booked at nine."
    assert [s.json() for s in business.on("/book")] == [{"time": "9:00"}]
    sessions = await (await client.get("/api/sessions?channel=relay", headers=auth("alice"))).json()
    [call] = sessions["sessions"][0]["toolCalls"]
    assert (call["name"], call["status"]) == ("book_slot", "ok")
