"""Outbound calls through the whole product and real SIP: the API places the call, the agent's job dials through
livekit-sip to a sipp callee, and every outcome the far end can give shows as the right status everywhere."""

from __future__ import annotations

import asyncio
import json
import time

import pytest

from tests.api.test_calls import Receiver
from tests.api.test_calls import _verify as verify_signature
from tests.harness.audio import speech_ulaw_wav
from tests.harness.sip import CALLEE_NUMBER, SippCallee

GREETING = "Hello! This is the front desk calling back."


async def _agent(product, **over) -> str:
    return await product.create_agent(firstMessage=GREETING, **over)


async def _place(product, agent_id: str, *, telephony: bool = False, callback_url: str | None = None) -> dict:
    path = "/api/telephony/outbound/call" if telephony else "/api/calls/outbound"
    body = {"agent_id": agent_id, "phone_number": CALLEE_NUMBER}
    if callback_url:
        body["callback_url"] = callback_url
    status, placed = await product.request("POST", path, json=body)
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
    raise AssertionError(
        f"call {call_id}: none of {wanted} in {timeout}s; last: {last}\n--- product log ---\n{product.log_tail(120)}"
    )


async def test_an_answered_call_talks_both_ways_and_ends_completed_through_the_api(sip_product, sip_callee):
    product = sip_product
    callee: SippCallee = sip_callee("uas_answer.xml", answer_after_ms=300, play=speech_ulaw_wav())
    agent_id = await _agent(product)
    receiver = Receiver(fail_first=1)  # the first delivery fails: the call must not care
    placed = await _place(product, agent_id, callback_url=await receiver.start())
    assert placed["status"] == "RINGING"
    answered = await _wait_status(product, placed["call_id"], {"ANSWERED", "FAILED", "NO_ANSWER"}, timeout=40)
    assert answered["call_status"] == "ANSWERED", answered
    # the agent's greeting and answer reach the callee's phone as audible RTP (livekit-sip sends silence anyway)
    await asyncio.to_thread(
        callee.rtp.wait_for, lambda s: s.nonsilent_packets >= 50, timeout=30, what="the agent's voice at the callee"
    )
    session = await product.wait_session(
        placed["session_id"],
        "alice",
        lambda s: (
            any(t["speaker"] == "USER" for t in s["transcript"])
            and sum(t["speaker"] == "AGENT" for t in s["transcript"]) >= 2
        ),
        timeout=40,
        what="the callee heard, transcribed and answered",
    )
    assert (session["direction"], session["call_direction"], session["outbound_phone_number"]) == (
        "outbound",
        "OUTBOUND",
        CALLEE_NUMBER,
    )

    status, ended = await product.request("POST", f"/api/calls/{placed['call_id']}/end")
    assert (status, ended) == (200, {"success": True})
    await asyncio.to_thread(callee.wait_received, "BYE", timeout=15)
    done = await _wait_status(product, placed["call_id"], {"COMPLETED"}, timeout=10)
    assert done["duration"] >= 1 and done["end_reason"] == "ended_by_api" and done["ended_at"]
    session = await product.wait_session(
        placed["session_id"],
        "alice",
        lambda s: s["status"] == "ended" and s["analysisStatus"] == "completed",
        timeout=60,
        what="ended and analysed",
    )
    assert session["call_status"] == "COMPLETED" and session["duration"] >= 1
    status, tel = await product.request("GET", f"/api/telephony/outbound/call/{placed['call_id']}/status")
    assert (tel["status"], tel["phone_number"]) == ("completed", CALLEE_NUMBER)
    # the line is metered: its answered minutes, unpriced until pricing.yaml has the carrier's rate
    status, breakdown = await product.request("GET", f"/api/sessions/{placed['session_id']}/cost-breakdown")
    assert status == 200, breakdown
    (line,) = [e for e in breakdown["events"] if e["event_type"] == "sip_minutes"]
    assert line["provider"] == "sip" and line["priced"] is False and line["total_cost"] is None
    assert abs(line["quantity"] * 60 - done["duration"]) <= 1
    # every status change reached the callback, signed, in order, the failed first delivery retried
    status, secret = await product.request("GET", "/api/calls/callback-secret")
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and [p["call_status"] for p, _, _ in receiver.requests][-1:] != ["COMPLETED"]:
        await asyncio.sleep(0.1)
    await receiver.server.close()
    seen = [
        (payload["call_status"], verify_signature(secret["secret"], sig, body))
        for payload, sig, body in receiver.requests
    ]
    assert seen == [("RINGING", True), ("RINGING", True), ("ANSWERED", True), ("COMPLETED", True)], seen
    status, attempts = await product.request("GET", f"/api/calls/{placed['call_id']}/callbacks")
    assert [(a["event_status"], a["delivered"]) for a in attempts] == [
        ("RINGING", False),
        ("RINGING", True),
        ("ANSWERED", True),
        ("COMPLETED", True),
    ]


async def test_a_callee_hanging_up_completes_the_call(sip_product, sip_callee):
    product = sip_product
    callee = sip_callee("uas_answer_hangup.xml", answer_after_ms=4000, play=speech_ulaw_wav())
    placed = await _place(product, await _agent(product))
    await _wait_status(product, placed["call_id"], {"ANSWERED"}, timeout=40)
    done = await _wait_status(product, placed["call_id"], {"COMPLETED", "FAILED"}, timeout=30)
    assert done["call_status"] == "COMPLETED" and done["duration"] >= 3, done
    assert await asyncio.to_thread(callee.wait_exit, timeout=15) == 0  # its BYE was answered
    session = await product.wait_session(
        placed["session_id"], "alice", lambda s: s["status"] == "ended", timeout=30, what="ended"
    )
    assert session["call_status"] == "COMPLETED"


@pytest.mark.parametrize(
    "scenario, call_status, telephony, end_reason, sip_code, error",
    [
        ("uas_busy.xml", "FAILED", "failed", "busy", 486, "Busy: the callee's line was busy (SIP 486)."),
        ("uas_decline.xml", "FAILED", "failed", "declined", 603, "Declined: the callee declined the call (SIP 603)."),
        (
            "uas_ring.xml",
            "NO_ANSWER",
            "no-answer",
            "no_answer",
            None,
            "No answer: the callee did not pick up within 3 s.",
        ),
    ],
)
async def test_each_failed_outcome_shows_its_status_reason_and_sip_code_everywhere(
    sip_product, sip_callee, scenario, call_status, telephony, end_reason, sip_code, error
):
    product = sip_product
    sip_callee(scenario, answer_after_ms=200)
    agent_id = await _agent(product)
    placed = await _place(product, agent_id, telephony=True)
    assert placed["status"] == "ringing"
    final = await _wait_status(product, placed["call_id"], {"COMPLETED", "FAILED", "NO_ANSWER"}, timeout=40)
    assert (final["call_status"], final["end_reason"], final["sip_status_code"]) == (call_status, end_reason, sip_code)
    assert final["duration"] == 0
    _status, tel = await product.request("GET", f"/api/telephony/outbound/call/{placed['call_id']}/status")
    assert (tel["status"], tel["end_reason"], tel["sip_status_code"]) == (telephony, end_reason, sip_code)
    session = await product.wait_session(
        placed["session_id"], "alice", lambda s: s["status"] == "ended", timeout=30, what="ended"
    )
    assert (session["call_status"], session["endReason"], session["error"]) == (call_status, end_reason, error)
    assert session["transcript"] == [] and session["duration"] == 0
    # nothing to analyse: never pending forever
    assert session["analysisStatus"] == "skipped" and "never answered" in session["analysisError"], session


async def test_an_agents_call_carries_its_context_into_the_first_llm_turn(sip_product, sip_callee, fakes):
    product = sip_product
    callee = sip_callee("uas_answer.xml", answer_after_ms=300, play=speech_ulaw_wav())
    agent_id = await _agent(product)
    context = {"customer": "Ada Lovelace", "order": "A-1042"}
    status, queued = await product.request(
        "POST", f"/api/agents/{agent_id}/call", json={"to_number": CALLEE_NUMBER, "context": context}
    )
    assert status == 201 and queued["status"] == "queued", queued
    await _wait_status(product, queued["call_id"], {"ANSWERED"}, timeout=40)
    status, active = await product.request("GET", "/api/calls/active")
    (live,) = [c for c in active if c["call_sid"] == queued["call_sid"]]
    assert (live["to_number"], live["direction"], live["context"]) == (CALLEE_NUMBER, "outbound", context)

    async def llm_saw(*words: str) -> None:
        def seen() -> bool:
            return any(all(w in json.dumps(entry.get("request")) for w in words) for entry in fakes.log("gemini"))

        deadline = time.monotonic() + 40
        while not await asyncio.to_thread(seen):
            assert time.monotonic() < deadline, f"no LLM request carried {words}\n{product.log_tail(80)}"
            await asyncio.sleep(0.25)

    await llm_saw("Ada Lovelace", "A-1042")
    # context pushed mid-call reaches the next LLM request (the callee keeps talking, so turns keep coming)
    status, updated = await product.request(
        "PUT", f"/api/calls/{queued['call_sid']}/context", json={"context": {"note": "Grace Hopper called earlier"}}
    )
    assert status == 200 and updated["context"]["note"] == "Grace Hopper called earlier", updated
    await llm_saw("Grace Hopper called earlier", "Ada Lovelace")
    await asyncio.to_thread(
        callee.rtp.wait_for, lambda s: s.nonsilent_packets >= 25, timeout=30, what="the agent's voice at the callee"
    )
    # a supervisor has the agent say something: the callee hears it, the transcript keeps who ordered it
    heard = callee.rtp.snapshot().nonsilent_packets
    words = "Please hold while a specialist joins us."
    status, said = await product.request(
        "POST", "/api/override/text", json={"call_sid": queued["call_sid"], "text": words}
    )
    assert status == 200, said
    await product.wait_session(
        queued["call_sid"],
        "alice",
        lambda s: any(t["content"] == words and t["source"] == "supervisor" for t in s["transcript"]),
        timeout=30,
        what="the supervisor's words recorded",
    )
    await asyncio.to_thread(
        callee.rtp.wait_for,
        lambda s: s.nonsilent_packets >= heard + 25,
        timeout=30,
        what="the supervisor's words at the callee",
    )
    status, _ = await product.request("POST", "/api/override/end", json={"call_sid": queued["call_sid"]})
    assert status == 200
    await asyncio.to_thread(callee.wait_received, "BYE", timeout=15)
    await _wait_status(product, queued["call_id"], {"COMPLETED"}, timeout=15)
    session = await product.wait_session(
        queued["call_sid"], "alice", lambda s: s["status"] == "ended", timeout=30, what="ended"
    )
    status, history = await product.request("GET", "/api/calls/history?limit=1000")
    (past,) = [c for c in history["calls"] if c["call_sid"] == queued["call_sid"]]
    assert past["status"] == "completed" and past["cost_nanos"] >= 0 and past["duration_seconds"] == session["duration"]


async def test_dtmf_from_the_supervisor_reaches_the_callee_as_rfc_4733_events(sip_product, sip_callee):
    product = sip_product
    callee = sip_callee("uas_answer_dtmf.xml", answer_after_ms=300, play=speech_ulaw_wav())
    placed = await _place(product, await _agent(product))
    await _wait_status(product, placed["call_id"], {"ANSWERED"}, timeout=40)
    await product.wait_session(
        placed["session_id"], "alice", lambda s: s["status"] == "active", timeout=20, what="the call's job running"
    )
    for digit in ("4", "2", "#"):
        status, sent = await product.request(
            "POST", "/api/override/dtmf", json={"call_sid": placed["session_id"], "digit": digit}
        )
        assert status == 200, sent
        await asyncio.to_thread(
            callee.rtp.wait_for, lambda s, d=digit: s.dtmf.endswith(d), timeout=15, what=f"DTMF {digit} at the callee"
        )
    assert callee.rtp.snapshot().dtmf == "42#"
    status, _ = await product.request("POST", "/api/override/end", json={"call_sid": placed["session_id"]})
    assert status == 200
    await _wait_status(product, placed["call_id"], {"COMPLETED"}, timeout=15)


async def _supervisor_transfer(product, sip_callee, scenario: str) -> tuple[SippCallee, dict]:
    """An answered phone call whose callee runs `scenario`, its job running, transferred by a supervisor to
    +15559990000: returns the callee once it has the REFER, and the placed call."""
    callee = sip_callee(scenario, answer_after_ms=300, play=speech_ulaw_wav())
    placed = await _place(product, await _agent(product))
    await _wait_status(product, placed["call_id"], {"ANSWERED"}, timeout=40)
    await product.wait_session(
        placed["session_id"], "alice", lambda s: s["status"] == "active", timeout=20, what="the call's job running"
    )
    status, sent = await product.request(
        "POST", "/api/override/transfer", json={"call_sid": placed["session_id"], "target": "+15559990000"}
    )
    assert status == 200, sent
    await asyncio.to_thread(callee.wait_received, "REFER", timeout=20)
    return callee, placed


async def test_a_supervisors_transfer_sends_the_callee_a_refer_and_ends_the_call_transferred(sip_product, sip_callee):
    product = sip_product
    callee, placed = await _supervisor_transfer(product, sip_callee, "uas_answer_refer.xml")
    sid = placed["session_id"]
    (refer,) = [m for m in callee.messages() if m.direction == "received" and m.first_line.startswith("REFER ")]
    assert "Refer-To: <tel:+15559990000>" in refer.text or "Refer-To: tel:+15559990000" in refer.text, refer.text
    ended = await _wait_status(product, placed["call_id"], {"COMPLETED", "FAILED"}, timeout=20)
    assert (ended["call_status"], ended["end_reason"]) == ("COMPLETED", "transferred"), ended
    session = await product.wait_session(
        sid, "alice", lambda s: s["status"] == "ended", timeout=20, what="the session ended"
    )
    assert session["endReason"] == "transferred" and not session["error"], session
    status, history = await product.request("GET", "/api/calls/history")
    assert status == 200, history
    (row,) = [c for c in history["calls"] if c["call_sid"] == sid]
    assert row["status"] == "transferred", row
    assert await asyncio.to_thread(callee.wait_exit, timeout=20) == 0, callee.describe()


async def test_a_transfer_the_phone_system_refuses_leaves_the_call_with_the_agent_and_says_why(sip_product, sip_callee):
    product = sip_product
    callee, placed = await _supervisor_transfer(product, sip_callee, "uas_answer_refer_decline.xml")
    sid = placed["session_id"]

    async def transfer_errors() -> list[dict]:
        status, events = await product.request("GET", f"/api/calls/{sid}/events")
        assert status == 200, events
        return [e for e in events["events"] if e["type"] == "error" and e.get("stage") == "transfer"]

    deadline = asyncio.get_running_loop().time() + 20
    while not (errors := await transfer_errors()):
        assert asyncio.get_running_loop().time() < deadline, "no transfer error on the session within 20 s"
        await asyncio.sleep(0.2)
    (error,) = errors
    assert error["recoverable"] is True and "603" in error["detail"], error
    # the call goes on with the agent: still answered, the session active, the line up until the end below
    status, call = await product.request("GET", f"/api/calls/{placed['call_id']}/status")
    assert status == 200 and call["call_status"] == "ANSWERED", call
    session = await product.wait_session(sid, "alice", lambda s: True, timeout=5, what="the session")
    assert session["status"] == "active" and session["endReason"] is None, session
    status, _ = await product.request("POST", "/api/override/end", json={"call_sid": sid})
    assert status == 200
    ended = await _wait_status(product, placed["call_id"], {"COMPLETED", "FAILED"}, timeout=20)
    assert ended["call_status"] == "COMPLETED" and ended["end_reason"] != "transferred", ended
    assert await asyncio.to_thread(callee.wait_exit, timeout=20) == 0, callee.describe()
