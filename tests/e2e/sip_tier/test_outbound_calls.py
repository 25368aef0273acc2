"""Outbound calls through the whole product and real SIP: the API places the call, the agent's job dials through
livekit-sip to a sipp callee, and every outcome the far end can give shows as the right status everywhere."""

from __future__ import annotations

import asyncio
import time

import pytest

from tests.harness.audio import speech_ulaw_wav
from tests.harness.sip import CALLEE_NUMBER, SippCallee

GREETING = "Hello! This is the front desk calling back."


async def _agent(product, **over) -> str:
    return await product.create_agent(firstMessage=GREETING, **over)


async def _place(product, agent_id: str, *, telephony: bool = False) -> dict:
    path = "/api/telephony/outbound/call" if telephony else "/api/calls/outbound"
    status, placed = await product.request("POST", path, json={"agent_id": agent_id, "phone_number": CALLEE_NUMBER})
    assert status == 201, placed
    return placed


async def _wait_status(product, call_id: str, wanted: set[str], *, timeout: float) -> dict:
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        status, last = await product.request("GET", f"/api/calls/{call_id}/status")
        assert status == 200, last
        if last["call_status"] in wanted:
            return last
        await asyncio.sleep(0.1)
    raise AssertionError(f"call {call_id}: none of {wanted} in {timeout}s; last: {last}\n"
                         f"--- product log ---\n{product.log_tail(120)}")


async def test_an_answered_call_talks_both_ways_and_ends_completed_through_the_api(sip_product, sip_callee):
    product = sip_product
    callee: SippCallee = sip_callee("uas_answer.xml", answer_after_ms=300, play=speech_ulaw_wav())
    agent_id = await _agent(product)
    placed = await _place(product, agent_id)
    assert placed["status"] == "RINGING"
    answered = await _wait_status(product, placed["call_id"], {"ANSWERED", "FAILED", "NO_ANSWER"}, timeout=40)
    assert answered["call_status"] == "ANSWERED", answered
    # the agent's greeting and answer reach the callee's phone as audible RTP (livekit-sip sends silence anyway)
    await asyncio.to_thread(callee.rtp.wait_for, lambda s: s.nonsilent_packets >= 50, timeout=30,
                            what="the agent's voice at the callee")
    session = await product.wait_session(
        placed["session_id"], "alice", lambda s: any(t["speaker"] == "USER" for t in s["transcript"])
        and sum(t["speaker"] == "AGENT" for t in s["transcript"]) >= 2, timeout=40,
        what="the callee heard, transcribed and answered")
    assert (session["direction"], session["call_direction"], session["outbound_phone_number"]) == (
        "outbound", "OUTBOUND", CALLEE_NUMBER)

    status, ended = await product.request("POST", f"/api/calls/{placed['call_id']}/end")
    assert (status, ended) == (200, {"success": True})
    await asyncio.to_thread(callee.wait_received, "BYE", timeout=15)
    done = await _wait_status(product, placed["call_id"], {"COMPLETED"}, timeout=10)
    assert done["duration"] >= 1 and done["end_reason"] == "ended_by_api" and done["ended_at"]
    session = await product.wait_session(
        placed["session_id"], "alice", lambda s: s["status"] == "ended" and s["analysisStatus"] == "completed",
        timeout=60, what="ended and analysed")
    assert session["call_status"] == "COMPLETED" and session["duration"] >= 1
    status, tel = await product.request("GET", f"/api/telephony/outbound/call/{placed['call_id']}/status")
    assert (tel["status"], tel["phone_number"]) == ("completed", CALLEE_NUMBER)
    # the line is metered: its answered minutes, unpriced until pricing.yaml has the carrier's rate
    status, breakdown = await product.request("GET", f"/api/sessions/{placed['session_id']}/cost-breakdown")
    assert status == 200, breakdown
    (line,) = [e for e in breakdown["events"] if e["event_type"] == "sip_minutes"]
    assert line["provider"] == "sip" and line["priced"] is False and line["total_cost"] is None
    assert abs(line["quantity"] * 60 - done["duration"]) <= 1


@pytest.mark.parametrize("scenario, call_status, telephony, end_reason, sip_code", [
    ("uas_busy.xml", "FAILED", "failed", "busy", 486),
    ("uas_decline.xml", "FAILED", "failed", "declined", 603),
    ("uas_ring.xml", "NO_ANSWER", "no-answer", "no_answer", None),
])
async def test_each_failed_outcome_shows_its_status_reason_and_sip_code_everywhere(
        sip_product, sip_callee, scenario, call_status, telephony, end_reason, sip_code):
    product = sip_product
    sip_callee(scenario, answer_after_ms=200)
    agent_id = await _agent(product)
    placed = await _place(product, agent_id, telephony=True)
    assert placed["status"] == "ringing"
    final = await _wait_status(product, placed["call_id"], {"COMPLETED", "FAILED", "NO_ANSWER"}, timeout=40)
    assert (final["call_status"], final["end_reason"], final["sip_status_code"]) == (call_status, end_reason, sip_code)
    assert final["duration"] == 0
    status, tel = await product.request("GET", f"/api/telephony/outbound/call/{placed['call_id']}/status")
    assert (tel["status"], tel["end_reason"], tel["sip_status_code"]) == (telephony, end_reason, sip_code)
    session = await product.wait_session(placed["session_id"], "alice", lambda s: s["status"] == "ended",
                                         timeout=30, what="ended")
    assert (session["call_status"], session["endReason"]) == (call_status, end_reason)
    assert session["transcript"] == []
