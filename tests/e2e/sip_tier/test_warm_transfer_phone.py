"""A warm transfer on real phone lines (livekit-sip, two sipp): the caller is the callee of an outbound call (on the
trunk's address), the human a second sipp on an address of its own, dialled by SIP URI. A supervisor asks for the
transfer; the human hears the briefing and presses 1 (both then hear each other) or 2, or never answers (the
caller is back with the agent, who says so)."""

from __future__ import annotations

import asyncio
import time

import numpy as np

from tests.e2e.sip_tier.test_outbound_calls import _agent, _place, _wait_status
from tests.e2e.sip_tier.test_recordings_phone import WINDOW, _channels, _epoch, _windows_rms, recorded_file
from tests.harness.audio import speech_ulaw_wav
from worker.warm_transfer import BACK_WITH_AGENT

# 1 s of speech heard (50 audible 20 ms packets)
HEARD = 50
HUMAN_CALL_MS = 12_000


async def _events(product, sid: str) -> list[dict]:
    status, page = await product.request("GET", f"/api/calls/{sid}/events")
    assert status == 200, page
    return page["events"]


async def _event(product, sid: str, kind: str, *, timeout: float) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        events = await _events(product, sid)
        found = next((e for e in events if e["type"] == kind), None)
        if found is not None:
            return found
        if time.monotonic() >= deadline:
            raise AssertionError(
                f"no {kind} on call {sid} within {timeout:g} s; events {[e['type'] for e in events]}\n"
                f"--- product log ---\n{product.log_tail(120)}"
            )
        await asyncio.sleep(0.1)


async def _call_in_progress(product, sip_callee, *, hang_up_after_ms: int | None = None, **agent_fields):
    """An answered outbound call whose callee (the caller of the transfer) has heard the agent's greeting; the
    callee hangs up `hang_up_after_ms` after answering, if given."""
    if hang_up_after_ms is None:
        caller = sip_callee("uas_answer.xml", answer_after_ms=300, play=speech_ulaw_wav(), timeout_s=120)
    else:
        caller = sip_callee("uas_answer_hangup.xml", answer_after_ms=hang_up_after_ms, play=speech_ulaw_wav())
    placed = await _place(product, await _agent(product, **agent_fields))
    await _wait_status(product, placed["call_id"], {"ANSWERED"}, timeout=40)
    await asyncio.to_thread(
        caller.rtp.wait_for, lambda s: s.nonsilent_packets >= 25, timeout=30, what="the agent's greeting"
    )
    return caller, placed


async def _heard_until_the_human_hangs_up(product, sid: str, caller, *, listener, what: str) -> dict:
    """After the merge `listener` (the caller or the human) hears the other; the human hangs up HUMAN_CALL_MS after
    answering, the caller gets a BYE, and the call ends `transferred`. Returns the ended session."""
    at = listener.rtp.snapshot().nonsilent_packets
    await asyncio.to_thread(
        listener.rtp.wait_for, lambda s: s.nonsilent_packets >= at + HEARD, timeout=10, what=f"{what} heard"
    )
    await asyncio.to_thread(caller.wait_received, "BYE", timeout=HUMAN_CALL_MS / 1000 + 15)
    session = await product.wait_session(sid, "alice", lambda s: s["status"] == "ended", timeout=30, what="ended")
    assert session["endReason"] == "transferred", session
    return session


async def _back_with_the_agent_then_ended(product, sid: str, caller, reason: str, *, sip_lines: int) -> dict:
    """The transfer not connected (`reason`): the agent says so to the caller, the call goes on (active) until a
    supervisor ends it, the caller gets its BYE, and the ledger holds `sip_lines` phone lines (the caller's, and the
    human's when they answered). Returns the ended session."""
    session = await product.wait_session(
        sid,
        "alice",
        lambda s: BACK_WITH_AGENT[reason] in [t["content"] for t in s["transcript"] if t["speaker"] == "AGENT"],
        timeout=20,
        what=f"the agent saying the transfer was not connected ({reason})",
    )
    assert session["status"] == "active", session
    status, _ = await product.request("POST", "/api/override/end", json={"call_sid": sid})
    assert status == 200
    session = await product.wait_session(sid, "alice", lambda s: s["status"] == "ended", timeout=30, what="ended")
    _status, breakdown = await product.request("GET", f"/api/sessions/{sid}/cost-breakdown")
    assert len([e for e in breakdown["events"] if e["event_type"] == "sip_minutes"]) == sip_lines, breakdown["events"]
    assert caller.received("BYE")
    return session


async def _transfer(product, sid: str, human) -> None:
    status, body = await product.request(
        "POST",
        "/api/override/transfer",
        json={"call_sid": sid, "target": f"sip:human@{human.address}", "mode": "warm"},
    )
    assert status == 200, body


async def test_an_accepted_warm_transfer_connects_the_caller_and_the_human_until_one_hangs_up(
    sip_product, sip_callee, sip_peer
):
    product = sip_product
    # the human answers, and hangs up HUMAN_CALL_MS later
    human = sip_peer("uas_answer_dtmf_hangup.xml", answer_after_ms=HUMAN_CALL_MS, play=speech_ulaw_wav())
    caller, placed = await _call_in_progress(product, sip_callee, recordingEnabled=True)
    sid = placed["session_id"]
    await _transfer(product, sid, human)
    started = await _event(product, sid, "transfer.started", timeout=10)
    assert (started["mode"], started["target"]) == ("warm", f"sip:human@{human.address}")
    # the human hears the briefing (the INVITE carried its one-line summary), and presses 1
    await asyncio.to_thread(human.rtp.wait_for, lambda s: s.nonsilent_packets >= 25, timeout=30, what="the briefing")
    (invite,) = [m for m in human.messages() if m.direction == "received" and m.first_line.startswith("INVITE ")]
    assert invite.header("X-Voxarena-Summary"), invite.text
    human.rtp.send_dtmf("1")
    accepted = await _event(product, sid, "transfer.accepted", timeout=15)
    # from now on, what each hears is the other: the hold audio stopped, the agent is silent
    at_caller, at_human = caller.rtp.snapshot().nonsilent_packets, human.rtp.snapshot().nonsilent_packets
    await asyncio.to_thread(
        caller.rtp.wait_for,
        lambda s: s.nonsilent_packets >= at_caller + HEARD,
        timeout=10,
        what="the human's voice at the caller",
    )
    await asyncio.to_thread(
        human.rtp.wait_for,
        lambda s: s.nonsilent_packets >= at_human + HEARD,
        timeout=10,
        what="the caller's voice at the human",
    )
    _status, live = await product.request("GET", f"/api/sessions/{sid}")
    assert live["status"] == "active", live  # the call goes on without the agent until someone hangs up

    # the human hangs up: the caller is hung up too, and the call ends transferred
    await asyncio.to_thread(caller.wait_received, "BYE", timeout=HUMAN_CALL_MS / 1000 + 15)
    session = await product.wait_session(sid, "alice", lambda s: s["status"] == "ended", timeout=30, what="ended")
    assert session["endReason"] == "transferred" and not session["error"], session
    assert await asyncio.to_thread(human.wait_exit, timeout=10) == 0, human.describe()  # its BYE answered
    assert [e["type"] for e in await _events(product, sid) if e["type"].startswith("transfer.")] == [
        "transfer.started",
        "transfer.accepted",
    ]
    # the human's leg is metered on its own, from their answer to their hang-up
    _status, breakdown = await product.request("GET", f"/api/sessions/{sid}/cost-breakdown")
    lines = sorted((e for e in breakdown["events"] if e["event_type"] == "sip_minutes"), key=lambda e: e["quantity"])
    assert len(lines) == 2, breakdown["events"]
    human_seconds, caller_seconds = lines[0]["quantity"] * 60, lines[1]["quantity"] * 60
    assert abs(human_seconds - HUMAN_CALL_MS / 1000) <= 1.5, lines
    assert human_seconds < caller_seconds, lines

    # the call was recorded to its end: after the merge, the caller on the left and the human where the agent was
    session = await product.wait_session(
        sid, "alice", lambda s: s["recordingDuration"] is not None, timeout=30, what="the recording finalized"
    )
    path = recorded_file(product, session, "transferred call")
    caller_w, other_w = (_windows_rms(x) for x in _channels(path))
    merged = int((_epoch(accepted["timestamp"]) - _epoch(session["startedAt"])) / WINDOW) + 5
    after_caller, after_other = caller_w[merged:-5], other_w[merged:-5]
    loud_caller, loud_other = np.mean(after_caller > 0.01), np.mean(after_other > 0.01)
    print(f"after the merge: caller's side {loud_caller:.0%} loud, the human's {loud_other:.0%}")
    assert loud_other > 0.3  # the human's looping speech (the agent itself is silent then)
    assert loud_caller > 0.3  # the caller's looping speech


async def test_a_declined_warm_transfer_brings_the_caller_back_to_the_agent(sip_product, sip_callee, sip_peer):
    product = sip_product
    human = sip_peer("uas_answer_dtmf.xml", answer_after_ms=300, play=speech_ulaw_wav(), timeout_s=120)
    caller, placed = await _call_in_progress(product, sip_callee)
    sid = placed["session_id"]
    await _transfer(product, sid, human)
    await asyncio.to_thread(human.rtp.wait_for, lambda s: s.nonsilent_packets >= 25, timeout=30, what="the briefing")
    human.rtp.send_dtmf("2")
    declined = await _event(product, sid, "transfer.declined", timeout=15)
    assert declined["reason"] == "declined", declined
    await asyncio.to_thread(human.wait_received, "BYE", timeout=15)  # the human's leg is hung up
    # the agent is back and says so; the call goes on
    session = await _back_with_the_agent_then_ended(product, sid, caller, "declined", sip_lines=2)
    assert session["endReason"] != "transferred", session


async def test_a_warm_transfer_nobody_answers_brings_the_caller_back_after_the_deadline(
    sip_product, sip_callee, sip_peer
):
    product = sip_product
    human = sip_peer("uas_ring.xml", timeout_s=120)
    caller, placed = await _call_in_progress(product, sip_callee)
    sid = placed["session_id"]
    await _transfer(product, sid, human)
    await asyncio.to_thread(human.wait_received, "INVITE", timeout=15)
    declined = await _event(product, sid, "transfer.declined", timeout=25)  # VOXARENA_WARM_TRANSFER_RING_SECONDS=4
    assert declined["reason"] == "no_answer", declined
    await asyncio.to_thread(human.wait_received, "CANCEL", timeout=15)
    await _back_with_the_agent_then_ended(product, sid, caller, "no_answer", sip_lines=1)


async def _tool_call_in_progress(product, sip_callee, human) -> tuple[object, dict]:
    """An answered outbound call whose agent has a warm transfer_call tool to the human."""
    caller = sip_callee("uas_answer.xml", answer_after_ms=300, play=speech_ulaw_wav(), timeout_s=120)
    tool = {"type": "transfer_call", "target": f"sip:human@{human.address}", "mode": "warm"}
    placed = await _place(product, await _agent(product, tools=[tool]))
    await _wait_status(product, placed["call_id"], {"ANSWERED"}, timeout=40)
    return caller, placed


async def test_the_agents_warm_transfer_tool_hears_a_sip_decline_and_the_agent_tells_the_caller(
    sip_product, sip_callee, sip_peer, fakes
):
    product = sip_product
    sorry = "I'm afraid nobody can take your call right now."
    fakes.script(
        llm_tool_calls=[{"name": "transfer_call", "args": {"reason": "billing question"}}], llm_replies=[sorry]
    )
    human = sip_peer("uas_decline.xml", answer_after_ms=500, timeout_s=120)
    caller, placed = await _tool_call_in_progress(product, sip_callee, human)
    sid = placed["session_id"]
    started = await _event(product, sid, "transfer.started", timeout=40)
    assert started["reason"] == "billing question", started
    declined = await _event(product, sid, "transfer.declined", timeout=20)
    assert declined["reason"] == "declined" and "603" in declined["detail"], declined
    # the SIP summary header carried the LLM's reason
    (invite,) = [m for m in human.messages() if m.direction == "received" and m.first_line.startswith("INVITE ")]
    assert invite.header("X-Voxarena-Summary").startswith("billing question"), invite.text
    session = await product.wait_session(
        sid,
        "alice",
        lambda s: sorry in [t["content"] for t in s["transcript"] if t["speaker"] == "AGENT"],
        timeout=20,
        what="the LLM telling the caller",
    )
    [call] = session["toolCalls"]
    assert (call["name"], call["status"]) == ("transfer_call", "error") and "declined" in call["result"], call
    status, _ = await product.request("POST", "/api/override/end", json={"call_sid": sid})
    assert status == 200
    await product.wait_session(sid, "alice", lambda s: s["status"] == "ended", timeout=30, what="ended")
    assert caller.received("BYE")


async def test_the_agents_warm_transfer_tool_connects_and_the_agent_says_nothing_more(
    sip_product, sip_callee, sip_peer, fakes
):
    product = sip_product
    fakes.script(
        llm_tool_calls=[{"name": "transfer_call", "args": {"reason": "wants a person"}}],
        llm_replies=["This must never be said."],
    )
    human = sip_peer("uas_answer_dtmf_hangup.xml", answer_after_ms=HUMAN_CALL_MS, play=speech_ulaw_wav())
    caller, placed = await _tool_call_in_progress(product, sip_callee, human)
    sid = placed["session_id"]
    await asyncio.to_thread(human.rtp.wait_for, lambda s: s.nonsilent_packets >= 25, timeout=40, what="the briefing")
    human.rtp.send_dtmf("1")
    accepted = await _event(product, sid, "transfer.accepted", timeout=15)
    assert accepted["by"] == "dtmf", accepted
    session = await _heard_until_the_human_hangs_up(product, sid, caller, listener=human, what="the caller's voice")
    [call] = session["toolCalls"]
    assert (call["name"], call["status"]) == ("transfer_call", "ok"), call
    assert "This must never be said." not in [t["content"] for t in session["transcript"]], session["transcript"]


async def test_the_human_may_accept_aloud(sip_product, sip_callee, sip_peer, fakes):
    product = sip_product
    human = sip_peer("uas_answer_dtmf_hangup.xml", answer_after_ms=HUMAN_CALL_MS, play=speech_ulaw_wav())
    caller, placed = await _call_in_progress(product, sip_callee)
    sid = placed["session_id"]
    await _transfer(product, sid, human)
    await _event(product, sid, "transfer.started", timeout=10)
    # the caller is on hold (the agent hears nothing of them): the next thing the STT hears is the human
    fakes.script(stt_transcripts=["Yes, put them through."])
    try:
        accepted = await _event(product, sid, "transfer.accepted", timeout=30)
    finally:
        fakes.script(stt_transcripts=[])
    assert accepted["by"] == "speech", accepted
    await _heard_until_the_human_hangs_up(product, sid, caller, listener=caller, what="the human's voice")


async def test_a_caller_who_hangs_up_during_the_briefing_ends_the_call_and_the_humans_leg(
    sip_product, sip_callee, sip_peer
):
    product = sip_product
    human = sip_peer("uas_answer_dtmf.xml", answer_after_ms=300, play=speech_ulaw_wav(), timeout_s=120)
    caller, placed = await _call_in_progress(product, sip_callee, hang_up_after_ms=10_000)
    sid = placed["session_id"]
    await _transfer(product, sid, human)
    await asyncio.to_thread(human.rtp.wait_for, lambda s: s.nonsilent_packets >= 25, timeout=30, what="the briefing")
    # the caller hangs up 10 s after answering, the human never presses a key: the human is hung up too
    await asyncio.to_thread(human.wait_received, "BYE", timeout=25)
    assert await asyncio.to_thread(caller.wait_exit, timeout=10) == 0, caller.describe()  # its BYE answered
    session = await product.wait_session(sid, "alice", lambda s: s["status"] == "ended", timeout=30, what="ended")
    assert session["endReason"] != "transferred", session
    declined = await _event(product, sid, "transfer.declined", timeout=10)
    assert declined["reason"] == "failed", declined
    assert not [e for e in await _events(product, sid) if e["type"] == "transfer.accepted"]
    _status, breakdown = await product.request("GET", f"/api/sessions/{sid}/cost-breakdown")
    assert len([e for e in breakdown["events"] if e["event_type"] == "sip_minutes"]) == 2, breakdown["events"]
