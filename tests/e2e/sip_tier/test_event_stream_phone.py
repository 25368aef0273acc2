"""The live event stream of a real phone call: the API places it, the job dials a sipp callee through livekit-sip,
the callee speaks; the stream carries every status change (`call.updated`) beside the call's start, transcript and
end, in order."""

from __future__ import annotations

import asyncio

from tests.e2e.test_event_stream import stream
from tests.harness.audio import speech_ulaw_wav
from tests.harness.sip import CALLEE_NUMBER, SippCallee

GREETING = "Hello! This is the front desk calling back."


async def test_a_phone_calls_status_changes_stream_between_its_start_and_end(sip_product, sip_callee):
    product = sip_product
    callee: SippCallee = sip_callee("uas_answer.xml", answer_after_ms=300, play=speech_ulaw_wav())
    agent_id = await product.create_agent(firstMessage=GREETING)
    async with stream(product) as events:
        status, placed = await product.request("POST", "/api/calls/outbound",
                                               json={"agent_id": agent_id, "phone_number": CALLEE_NUMBER})
        assert status == 201, placed
        sid = placed["session_id"]
        await events.wait_for(lambda e: e["call_sid"] == sid and e["type"] == "transcript.final"
                              and e["speaker"] == "user", timeout=60, what="the callee's words")
        status, _ = await product.request("POST", f"/api/calls/{placed['call_id']}/end")
        assert status == 200
        await asyncio.to_thread(callee.wait_received, "BYE", timeout=15)
        ended = await events.wait_for(lambda e: e["call_sid"] == sid and e["type"] == "call.ended", timeout=30,
                                      what="call.ended")
        got = events.of(sid)
    updates = [(e["call_status"], e["status"]) for e in got if e["type"] == "call.updated"]
    assert updates == [("RINGING", "ringing"), ("ANSWERED", "answered"), ("COMPLETED", "completed")], got
    types = [e["type"] for e in got]
    assert types[0] == "call.updated" and types[1] == "call.started" and types[-1] == "call.ended", types
    answered = types.index("call.updated", 1)
    # the callee talks at once, so the greeting may be cut short (interrupted): it is what was said of it
    greeting = next(i for i, e in enumerate(got) if e["type"] == "transcript.final" and e["speaker"] == "agent")
    assert GREETING.startswith(got[greeting]["text"]), got[greeting]
    partial = types.index("transcript.partial")
    user = next(i for i, e in enumerate(got) if e["type"] == "transcript.final" and e["speaker"] == "user")
    completed = max(i for i, t in enumerate(types) if t == "call.updated")
    assert answered < greeting < completed < len(got) - 1 and answered < partial < user < completed, types
    assert got[1]["to_number"] == CALLEE_NUMBER and got[1]["direction"] == "outbound"
    assert ended["duration"] >= 1 and got[completed]["call_id"] == placed["call_id"]
