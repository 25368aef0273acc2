"""The live event stream of real phone calls: the API places one, the job dials a sipp callee through livekit-sip,
the callee speaks, and the stream carries every status change (`call.updated`) after the call's start, beside its
transcript, and before its end, in order; a sipp caller rings an assigned number, and the stream names the call's
numbers."""

from __future__ import annotations

import asyncio

from tests.e2e.sip_tier.test_inbound_calls import _register, sip_caller  # noqa: F401  (fixtures, found by pytest by name)
from tests.e2e.test_event_stream import stream
from tests.harness.audio import speech_ulaw_wav
from tests.harness.sip import CALLEE_NUMBER, SippCallee
from tests.harness.sip_caller import CALLER_NUMBER

GREETING = "Hello! This is the front desk calling back."


async def test_a_phone_calls_status_changes_stream_between_its_start_and_end(sip_product, sip_callee):
    product = sip_product
    callee: SippCallee = sip_callee("uas_answer.xml", answer_after_ms=300, play=speech_ulaw_wav())
    agent_id = await product.create_agent(firstMessage=GREETING)
    async with stream(product) as events:
        status, placed = await product.request(
            "POST", "/api/calls/outbound", json={"agent_id": agent_id, "phone_number": CALLEE_NUMBER}
        )
        assert status == 201, placed
        sid = placed["session_id"]
        await events.wait_for(
            lambda e: e["call_sid"] == sid and e["type"] == "transcript.final" and e["speaker"] == "user",
            timeout=60,
            what="the callee's words",
        )
        status, _ = await product.request("POST", f"/api/calls/{placed['call_id']}/end")
        assert status == 200
        await asyncio.to_thread(callee.wait_received, "BYE", timeout=15)
        ended = await events.wait_for(
            lambda e: e["call_sid"] == sid and e["type"] == "call.ended", timeout=30, what="call.ended"
        )
        got = events.of(sid)
    updates = [(e["call_status"], e["status"]) for e in got if e["type"] == "call.updated"]
    assert updates == [("RINGING", "ringing"), ("ANSWERED", "answered"), ("COMPLETED", "completed")], got
    types = [e["type"] for e in got]
    assert types[0] == "call.started" and types[1] == "call.updated" and types[-1] == "call.ended", types
    answered = types.index("call.updated", 2)
    # the callee talks at once, so the greeting may be cut short (interrupted): it is what was said of it
    greeting = next(i for i, e in enumerate(got) if e["type"] == "transcript.final" and e["speaker"] == "agent")
    assert GREETING.startswith(got[greeting]["text"]), got[greeting]
    partial = types.index("transcript.partial")
    user = next(i for i, e in enumerate(got) if e["type"] == "transcript.final" and e["speaker"] == "user")
    completed = max(i for i, t in enumerate(types) if t == "call.updated")
    assert answered < greeting < completed < len(got) - 1 and answered < partial < user < completed, types
    assert got[0]["to_number"] == CALLEE_NUMBER and got[0]["direction"] == "outbound"
    assert ended["duration"] >= 1 and got[completed]["call_id"] == placed["call_id"]


async def test_an_inbound_calls_stream_names_its_numbers_from_start_to_end(sip_product, sip_caller):
    product = sip_product
    number = "+15551230077"
    agent_id = await product.create_agent(firstMessage=GREETING)
    await _register(product, number, agent_id)
    async with stream(product) as events:
        caller = sip_caller(number, call_ms=10_000, play=speech_ulaw_wav())
        started = await events.wait_for(
            lambda e: e["type"] == "call.started" and e["to_number"] == number,
            timeout=40,
            what="the inbound call.started",
        )
        sid = started["call_sid"]
        assert await asyncio.to_thread(caller.wait_exit, timeout=40) == 0, caller.describe()  # the caller hung up
        ended = await events.wait_for(
            lambda e: e["call_sid"] == sid and e["type"] == "call.ended", timeout=30, what="call.ended"
        )
        got = events.of(sid)
    assert (started["from_number"], started["direction"], started["agent_id"]) == (CALLER_NUMBER, "inbound", agent_id)
    types = [e["type"] for e in got]
    assert types[0] == "call.started" and types[-1] == "call.ended" and "call.updated" not in types, types
    finals = [e for e in got if e["type"] == "transcript.final"]
    assert finals and finals[0]["speaker"] == "agent" and GREETING.startswith(finals[0]["text"]), finals
    assert ended["duration"] >= 5 and ended["error"] is None, ended
