"""An agent's tools on a web call through the whole product: a real livekit-server, the job's LiveKit function tools,
the Gemini fake calling them, a business API on loopback answering. The caller hears the reply built from the
tool's answer; a slow tool gets its filler said and a timeout; `end_call` hangs up after the goodbye."""

from __future__ import annotations

import time

import pytest

from tests.harness.audio import speech_wav
from tests.harness.tool_server import ToolServer, verify

SCHEMA = {"type": "object", "properties": {"time": {"type": "string"}}, "required": ["time"]}
BOOKED = "You are booked at ten thirty. Your reference is B K one zero four two."


@pytest.fixture
async def business():
    server = await ToolServer(slow_seconds=10).start()
    yield server
    await server.close()


def _tool(url: str, **over) -> dict:
    return {
        "type": "http",
        "name": "book_slot",
        "description": "Book a slot.",
        "parameters": SCHEMA,
        "url": url,
        **over,
    }


async def _ask(client, words: str = "Book me at half past ten please.") -> float:
    """The caller speaks once; returns when the reply began."""
    sent = await client.publish_wav(speech_wav(words), trail_silence=0.3)
    return await client.wait_for_audio(after=sent.last_speech_at, min_nonsilent_s=0.5, timeout=30)


def _agent_said(s: dict) -> list[str]:
    return [t["content"] for t in s["transcript"] if t["speaker"] == "AGENT"]


async def test_a_web_call_calls_the_tool_mid_turn_and_the_caller_hears_the_answer(voice_stack, business):
    product, _, fakes = voice_stack
    agent_id = await product.create_agent(
        firstMessage="Hello, front desk.", tools=[_tool(business.url("/book"), headers={"Authorization": "Bearer t"})]
    )
    fakes.script(llm_tool_calls=[{"name": "book_slot", "args": {"time": "10:30"}}], llm_replies=[BOOKED])
    client, tok = await product.join(agent_id)
    try:
        await client.wait_for_audio(after=time.monotonic(), min_nonsilent_s=0.5, timeout=30)
        await client.wait_for_quiet(quiet_s=0.8, timeout=30)
        heard_at = await _ask(client)
        await client.wait_for_quiet(quiet_s=0.8, timeout=30)
        assert client.nonsilent_duration_after(heard_at) > 2.0  # the booked sentence, not a blip
    finally:
        await client.disconnect()

    s = await product.wait_session(
        tok["sessionId"], "alice", lambda s: s["endedAt"] is not None, timeout=45, what="ended"
    )
    assert BOOKED in _agent_said(s), s["transcript"]
    [call] = s["toolCalls"]
    assert (call["name"], call["status"], call["httpStatus"], call["arguments"]) == (
        "book_slot",
        "ok",
        200,
        {"time": "10:30"},
    )
    [seen] = business.on("/book")
    assert seen.json() == {"time": "10:30"} and seen.headers["Authorization"] == "Bearer t"
    assert seen.headers["X-Voxarena-Session-Id"] == tok["sessionId"]
    _, secret = await product.request("GET", "/api/calls/callback-secret")
    assert verify(secret["secret"], seen.headers["X-Voxarena-Signature"], seen.body)
    status, events = await product.request("GET", f"/api/calls/{tok['sessionId']}/events")
    kinds = [e["type"] for e in events["events"]]
    assert status == 200 and kinds.index("tool.called") < kinds.index("tool.result"), kinds


async def test_a_slow_tool_gets_its_filler_said_then_times_out_and_the_call_goes_on(voice_stack, business):
    product, _, fakes = voice_stack
    tool = _tool(business.url("/slow"), timeoutMs=2500, filler="One moment while I check.")
    agent_id = await product.create_agent(firstMessage="Hello, front desk.", tools=[tool])
    fakes.script(
        llm_tool_calls=[{"name": "book_slot", "args": {"time": "9"}}],
        llm_replies=["Sorry, the booking system is not answering right now."],
    )
    client, tok = await product.join(agent_id)
    try:
        await client.wait_for_audio(after=time.monotonic(), min_nonsilent_s=0.5, timeout=30)
        await client.wait_for_quiet(quiet_s=0.8, timeout=30)
        await _ask(client)
        s = await product.wait_session(
            tok["sessionId"],
            "alice",
            lambda s: "Sorry, the booking system is not answering right now." in _agent_said(s),
            timeout=30,
            what="the apology after the timeout",
        )
    finally:
        await client.disconnect()
    said = _agent_said(s)
    assert "One moment while I check." in said, said
    assert said.index("One moment while I check.") < said.index("Sorry, the booking system is not answering right now.")
    [call] = s["toolCalls"]
    assert call["status"] == "timeout" and 2400 <= call["latencyMs"] < 6000, call


async def test_end_call_hangs_up_after_the_goodbye(voice_stack):
    product, _, fakes = voice_stack
    agent_id = await product.create_agent(firstMessage="Hello, front desk.", tools=[{"type": "end_call"}])
    fakes.script(llm_tool_calls=[{"name": "end_call", "args": {}}], llm_replies=["Goodbye, have a nice day."])
    client, tok = await product.join(agent_id)
    try:
        await client.wait_for_audio(after=time.monotonic(), min_nonsilent_s=0.5, timeout=30)
        await client.wait_for_quiet(quiet_s=0.8, timeout=30)
        await _ask(client, "That is all, thank you, bye.")
        s = await product.wait_session(
            tok["sessionId"], "alice", lambda s: s["endedAt"] is not None, timeout=30, what="ended by the agent"
        )
    finally:
        await client.disconnect()
    assert s["endReason"] == "agent_ended" and s["error"] is None, s
    assert _agent_said(s)[-1] == "Goodbye, have a nice day."
    assert [(c["name"], c["status"]) for c in s["toolCalls"]] == [("end_call", "ok")]


async def test_the_pre_call_webhook_fills_the_prompt_and_first_message_of_the_call(voice_stack, business):
    product, _, fakes = voice_stack
    agent_id = await product.create_agent(
        systemPrompt="You are speaking with {{customer_name}}, a {{tier}} member.",
        firstMessage="Hello {{customer_name}}, welcome back.",
        contextWebhookUrl=business.url("/context"),
    )
    fakes.script(llm_replies=["Happy to help."])
    client, tok = await product.join(agent_id)
    try:
        await client.wait_for_audio(after=time.monotonic(), min_nonsilent_s=0.5, timeout=30)
        await client.wait_for_quiet(quiet_s=0.8, timeout=30)
        await _ask(client, "What are your opening hours?")
        s = await product.wait_session(
            tok["sessionId"], "alice", lambda s: "Happy to help." in _agent_said(s), timeout=30, what="the reply"
        )
    finally:
        await client.disconnect()
    assert _agent_said(s)[0] == "Hello Ada Lovelace, welcome back."
    [seen] = business.on("/context")
    asked = seen.json()
    assert (asked["event"], asked["agent_id"], asked["session_id"]) == ("call.starting", agent_id, tok["sessionId"])
    _, secret = await product.request("GET", "/api/calls/callback-secret")
    assert verify(secret["secret"], seen.headers["X-Voxarena-Signature"], seen.body)
    prompts = [r["request"]["systemInstruction"]["parts"][0]["text"] for r in fakes.log("gemini") if not r["json_mode"]]
    assert any("You are speaking with Ada Lovelace, a gold member." in p for p in prompts), prompts[-1:]


async def test_a_late_pre_call_webhook_is_given_up_and_the_call_starts_saying_why(voice_stack, business):
    product, _, _ = voice_stack
    agent_id = await product.create_agent(
        firstMessage="Hello {{customer_name}}.", contextWebhookUrl=business.url("/slow")
    )
    client, tok = await product.join(agent_id)
    try:
        t0 = time.monotonic()
        heard = await client.wait_for_audio(after=t0, min_nonsilent_s=0.5, timeout=30)
        assert heard - t0 < 10  # the webhook holds its answer for 10 s; the call waited 1.5 s for it
        await client.wait_for_quiet(quiet_s=0.8, timeout=30)  # the whole greeting
    finally:
        await client.disconnect()
    status, events = await product.request("GET", f"/api/calls/{tok['sessionId']}/events")
    listed = events["events"]
    errors = [e for e in listed if e["type"] == "error"]
    assert status == 200 and errors, listed
    assert errors[0]["stage"] == "context_webhook" and errors[0]["recoverable"] is True
    assert errors[0]["detail"] == "the context webhook did not answer within 1.5 s"
    s = await product.wait_session(tok["sessionId"], "alice", lambda s: s["transcript"], timeout=30, what="greeting")
    assert _agent_said(s)[0] == "Hello {{customer_name}}."  # nothing filled it: left as written
