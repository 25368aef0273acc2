"""Voicemail detection on real outbound phone calls (livekit-sip, a sipp callee playing a greeting): a voicemail is
hung up on before the agent says a word (and counted as a campaign's voicemail), a message is left after the beep,
and a person hears the agent's greeting. The Gemini fake stands in for the LLM's classification
(tests/fakes/gemini.py `greeting_label`); the STT fake transcribes the greeting as its text."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator

import pytest

from tests.e2e.sip_tier.test_campaigns_phone import _until
from tests.e2e.sip_tier.test_outbound_calls import GREETING, _place, _wait_status
from tests.harness.audio import SILENCE_DBFS, nonsilent_frame_indexes
from tests.harness.greetings import Greeting, by_name, greeting_ulaw_wav, spoken_seconds

# a valid number (the campaign checks it); the trunk sends every call to the sipp callee
CONTACT = "+14155550142"
MESSAGE = "Hi Sam, this is the clinic. Please call us back about your appointment tomorrow."


@pytest.fixture
def answering(fakes, sip_callee) -> Iterator[Callable[[str], tuple[Greeting, object]]]:
    """answering("reached-sam") -> (the greeting, the sipp callee playing it once answered); the STT fake hears the
    greeting as one utterance (its pauses and beep inside it), transcribed as its text."""

    def start(name: str) -> tuple[Greeting, object]:
        greeting = by_name(name)
        fakes.script(stt_transcripts=[greeting.text], stt_end_silence_ms=900)
        return greeting, sip_callee("uas_answer.xml", answer_after_ms=300, play=greeting_ulaw_wav(greeting))

    try:
        yield start
    finally:
        fakes.script(stt_transcripts=[], stt_end_silence_ms=300)


async def _agent(product, **over) -> str:
    return await product.create_agent(firstMessage=GREETING, voicemailDetection=True, **over)


async def _ended(product, session_id: str) -> dict:
    return await product.wait_session(session_id, "alice", lambda s: s["status"] == "ended", timeout=60, what="ended")


async def _amd_event(product, session_id: str) -> dict:
    status, page = await product.request("GET", f"/api/calls/{session_id}/events")
    assert status == 200, page
    [event] = [e for e in page["events"] if e["type"] == "amd.result"]
    return event


async def test_a_voicemail_is_hung_up_on_before_the_agent_speaks_and_counts_as_the_campaigns_voicemail(
    sip_product, answering, fakes
):
    product = sip_product
    _, callee = answering("reached-sam")
    before = fakes.counters()["gemini"]
    status, made = await product.request(
        "POST",
        "/api/campaigns",
        json={"name": "vm-check", "agent_id": await _agent(product), "contacts": [{"phone_number": CONTACT}]},
    )
    assert status == 201, made
    assert (await product.request("POST", f"/api/campaigns/{made['id']}/start"))[0] == 200

    async def attempt() -> dict | None:
        status, page = await product.request("GET", f"/api/campaigns/{made['id']}/contacts")
        assert status == 200, page
        attempts = page["contacts"][0]["attempts"]
        return attempts[0] if attempts and attempts[0]["session_id"] else None

    dialled = await _until("the dial", attempt, 40, product)
    await asyncio.to_thread(callee.wait_received, "BYE", timeout=60)
    s = await _ended(product, dialled["session_id"])
    assert (s["answeredBy"], s["endReason"], s["error"]) == ("machine-vm", "voicemail", None), s
    assert not [t for t in s["transcript"] if t["speaker"] == "AGENT"], s["transcript"]  # never a word
    assert fakes.counters()["gemini"]["amd_requests"] > before["amd_requests"]

    async def settled() -> dict | None:
        status, campaign = await product.request("GET", f"/api/campaigns/{made['id']}")
        return campaign if status == 200 and campaign["status"] == "completed" else None

    campaign = await _until("the campaign completed", settled, 30, product)
    assert campaign["progress"]["voicemail"] == 1, campaign["progress"]
    assert (await attempt() or {}).get("status") == "voicemail"


async def test_a_message_is_left_after_the_beep(sip_product, answering):
    product = sip_product
    greeting, callee = answering("reached-sam")
    agent_id = await _agent(product, voicemailAction="leave_message", voicemailMessage=MESSAGE)
    placed = await _place(product, agent_id)
    await asyncio.to_thread(callee.wait_received, "BYE", timeout=90)
    s = await _ended(product, placed["session_id"])
    assert (s["answeredBy"], s["endReason"]) == ("machine-vm", "voicemail"), s
    assert [t["content"] for t in s["transcript"] if t["speaker"] == "AGENT"] == [MESSAGE], s["transcript"]
    event = await _amd_event(product, placed["session_id"])
    assert event["outcome"] == "machine-vm" and "message" in event["transcript"], event
    # the callee's RTP: the agent's first sound came after the greeting and its beep were over
    samples = callee.rtp.samples()
    loud = nonsilent_frame_indexes(samples, 8000, 20, SILENCE_DBFS)
    assert loud, "the callee heard nothing"
    assert loud[0] * 0.02 > spoken_seconds(greeting), (loud[0] * 0.02, spoken_seconds(greeting))
    assert (await _wait_status(product, placed["call_id"], {"COMPLETED"}, timeout=15))["call_status"]


async def test_a_person_is_greeted_and_the_call_goes_on(sip_product, answering):
    product = sip_product
    answering("hello")
    placed = await _place(product, await _agent(product))
    s = await product.wait_session(
        placed["session_id"],
        "alice",
        lambda s: any(t["speaker"] == "AGENT" for t in s["transcript"]),
        timeout=60,
        what="the agent's greeting",
    )
    assert s["answeredBy"] == "human" and s["status"] == "active", (s, product.log_tail(60))
    assert next(t["content"] for t in s["transcript"] if t["speaker"] == "AGENT") == GREETING, s["transcript"]
    status, _ = await product.request("POST", "/api/override/end", json={"call_sid": placed["session_id"]})
    assert status == 200
    s = await _ended(product, placed["session_id"])
    assert s["endReason"] != "voicemail", s


async def test_a_busy_line_is_still_busy_when_the_agent_listens_before_the_answer(sip_product, sip_callee):
    product = sip_product
    callee = sip_callee("uas_busy.xml", answer_after_ms=200)
    placed = await _place(product, await _agent(product))
    ended = await _wait_status(product, placed["call_id"], {"COMPLETED", "FAILED", "NO_ANSWER"}, timeout=40)
    assert (ended["call_status"], ended["sip_status_code"]) == ("FAILED", 486), ended
    s = await _ended(product, placed["session_id"])
    assert (s["endReason"], s["answeredBy"]) == ("busy", None), s
    assert s["analysisStatus"] == "skipped", s
    assert await asyncio.to_thread(callee.wait_exit, timeout=30) == 0, callee.describe()
