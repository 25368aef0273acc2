"""An agent's call tools on a real phone call (livekit-sip and a sipp callee): the LLM (the Gemini fake, scripted)
decides to hang up, to transfer or to press keys, and the far end gets the BYE, the REFER or the RFC 4733 events;
each tool call is recorded on the session."""

from __future__ import annotations

import asyncio

from tests.e2e.sip_tier.test_outbound_calls import _agent, _place, _wait_status
from tests.harness.audio import speech_ulaw_wav


async def _answered(product, sip_callee, scenario: str, tools: list[dict]) -> tuple[object, dict]:
    callee = sip_callee(scenario, answer_after_ms=300, play=speech_ulaw_wav())
    placed = await _place(product, await _agent(product, tools=tools))
    await _wait_status(product, placed["call_id"], {"ANSWERED"}, timeout=40)
    return callee, placed


async def test_end_call_hangs_up_an_outbound_call_with_a_bye_after_the_goodbye(sip_product, sip_callee, fakes):
    product = sip_product
    fakes.script(llm_tool_calls=[{"name": "end_call", "args": {}}], llm_replies=["Thank you, goodbye."])
    callee, placed = await _answered(product, sip_callee, "uas_answer.xml", [{"type": "end_call"}])
    await asyncio.to_thread(callee.wait_received, "BYE", timeout=40)
    ended = await _wait_status(product, placed["call_id"], {"COMPLETED", "FAILED"}, timeout=20)
    assert ended["call_status"] == "COMPLETED", ended
    s = await product.wait_session(
        placed["session_id"], "alice", lambda s: s["status"] == "ended", timeout=20, what="ended"
    )
    assert s["endReason"] == "agent_ended" and not s["error"], s
    assert [t["content"] for t in s["transcript"] if t["speaker"] == "AGENT"][-1] == "Thank you, goodbye."
    assert [(c["name"], c["status"]) for c in s["toolCalls"]] == [("end_call", "ok")]


async def test_transfer_call_sends_the_callee_a_refer_to_the_tools_target(sip_product, sip_callee, fakes):
    product = sip_product
    fakes.script(llm_tool_calls=[{"name": "transfer_call", "args": {"reason": "wants a person"}}])
    tool = {"type": "transfer_call", "target": "+15559990000"}
    callee, placed = await _answered(product, sip_callee, "uas_answer_refer.xml", [tool])
    await asyncio.to_thread(callee.wait_received, "REFER", timeout=40)
    (refer,) = [m for m in callee.messages() if m.direction == "received" and m.first_line.startswith("REFER ")]
    assert "tel:+15559990000" in refer.text, refer.text
    s = await product.wait_session(
        placed["session_id"], "alice", lambda s: s["status"] == "ended", timeout=30, what="ended"
    )
    assert s["endReason"] == "transferred" and not s["error"], s
    [call] = s["toolCalls"]
    assert (call["name"], call["arguments"]) == ("transfer_call", {"reason": "wants a person"})
    assert await asyncio.to_thread(callee.wait_exit, timeout=20) == 0, callee.describe()


async def test_send_dtmf_presses_the_keys_the_llm_chose(sip_product, sip_callee, fakes):
    product = sip_product
    fakes.script(llm_tool_calls=[{"name": "send_dtmf", "args": {"digits": "42#"}}], llm_replies=["Done."])
    callee, placed = await _answered(product, sip_callee, "uas_answer_dtmf.xml", [{"type": "send_dtmf"}])
    await asyncio.to_thread(
        callee.rtp.wait_for, lambda s: s.dtmf.endswith("42#"), timeout=40, what="the keys at the callee"
    )
    s = await product.wait_session(
        placed["session_id"],
        "alice",
        lambda s: s["toolCalls"] and s["toolCalls"][0]["status"] != "running",
        timeout=20,
        what="the tool's result",
    )
    assert [(c["name"], c["status"], c["result"]) for c in s["toolCalls"]] == [("send_dtmf", "ok", "Pressed 42#.")]
    status, _ = await product.request("POST", "/api/override/end", json={"call_sid": placed["session_id"]})
    assert status == 200
    await _wait_status(product, placed["call_id"], {"COMPLETED"}, timeout=15)
