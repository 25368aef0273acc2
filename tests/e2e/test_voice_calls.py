"""Calls through the whole product: a LiveKit SDK client gets a token from the API, joins a real livekit-server,
speaks (espeak-ng), and hears the agent; the session, its latencies and its analysis are stored."""

from __future__ import annotations

import re
import time

import pytest

from tests.e2e.conftest import ANALYSIS_JSON
from tests.harness.audio import speech_wav

GREETING = "Hello! Thanks for calling. How can I help?"
# LiveKit's session host's topic (livekit.agents.voice.remote_session)
SESSION_TOPIC = "lk.agent.session"


async def _agent(product, user="alice", **over) -> str:
    body = {
        "name": "Front desk",
        "systemPrompt": "You answer questions about opening hours.",
        "sttProvider": "deepgram",
        "llmProvider": "gemini",
        "ttsProvider": "elevenlabs",
        "firstMessage": GREETING,
        "firstMessageMode": "assistant_speaks_first",
        **over,
    }
    status, agent = await product.request("POST", "/api/agents", user, json=body)
    assert status == 201, agent
    return agent["id"]


async def _call(product, agent_id: str, *, user="alice", greet: bool = True, turns: int = 1) -> tuple[str, float]:
    client, tok = await product.join(agent_id, user)
    try:
        t0 = time.monotonic()
        if greet:
            await client.wait_for_audio(after=t0, min_nonsilent_s=0.5, timeout=30)
            await client.wait_for_quiet(quiet_s=0.8, timeout=30)  # the greeting finished
        else:
            await client.wait_for_agent()  # the agent waits for the caller: asked before it joined, it hears nothing
        latency = 0.0
        for _ in range(turns):
            sent = await client.publish_wav(speech_wav("What are your opening hours?"), trail_silence=0.3)
            heard = await client.wait_for_audio(after=sent.last_speech_at, min_nonsilent_s=0.5, timeout=30)
            latency = heard - sent.last_speech_at
            await client.wait_for_quiet(quiet_s=0.8, timeout=30)  # the reply played out
    finally:
        await client.disconnect()
    return tok["sessionId"], latency


def _ended_with_analysis(s: dict) -> bool:
    return s["endedAt"] is not None and s["analysisStatus"] in ("completed", "failed")


async def test_a_call_is_answered_recorded_with_latencies_and_analysed(voice_stack):
    product, _, fakes = voice_stack
    before = fakes.counters()
    agent_id = await _agent(product)
    session_id, latency = await _call(product, agent_id)
    assert 0 < latency < 10
    s = await product.wait_session(session_id, "alice", _ended_with_analysis, timeout=45, what="ended and analysed")
    speakers = [t["speaker"] for t in s["transcript"]]
    assert speakers[0] == "AGENT" and s["transcript"][0]["content"] == GREETING
    assert "USER" in speakers and speakers.count("AGENT") >= 2, s["transcript"]
    user = next(t for t in s["transcript"] if t["speaker"] == "USER")
    assert user["content"] == "What are your opening hours?"
    reply = s["transcript"][speakers.index("USER") + 1]
    assert reply["speaker"] == "AGENT" and reply["content"] == "We are open from nine to five, every weekday."
    m = reply["metrics"]
    assert m["llm_ttft"] > 0 and m["tts_ttfb"] > 0 and m["e2e_latency"] > 0 and m["end_of_turn_delay"] >= 0, m
    assert s["duration"] >= 3 and s["status"] == "ended" and s["endReason"] == "participant_disconnected"
    assert s["direction"] == "inbound" and s["error"] is None
    assert s["analysis"] == ANALYSIS_JSON and s["analysisStatus"] == "completed"
    # the job counted the agent's audio at the room's source (the greeting and the reply: seconds of it)
    said = re.search(rf"session {session_id}: agent audio: ([\d.]+) s to the room, \d+ holes", product.log_tail(2000))
    assert said and float(said.group(1)) >= 1.0, "no audio-source report for the call in the product's log"
    status, analysis = await product.request("GET", f"/api/sessions/{session_id}/analysis")
    assert status == 200 and analysis == ANALYSIS_JSON
    after = fakes.counters()
    assert after["deepgram"]["audio_seconds"] > before["deepgram"]["audio_seconds"]
    assert after["elevenlabs_tts"]["characters"] > before["elevenlabs_tts"]["characters"]
    # someone else sees nothing of it
    status, _ = await product.request("GET", f"/api/sessions/{session_id}", "mallory")
    assert status == 404


async def test_ten_calls_in_a_row_all_complete(voice_stack):
    product, _, _ = voice_stack
    agent_id = await _agent(product, firstMessageMode="assistant_waits", firstMessage=None)
    ids = []
    for _ in range(10):
        session_id, _ = await _call(product, agent_id, greet=False)
        ids.append(session_id)
    for session_id in ids:
        s = await product.wait_session(session_id, "alice", _ended_with_analysis, timeout=45, what="ended")
        assert [t["speaker"] for t in s["transcript"]][:2] == ["USER", "AGENT"], s["transcript"]
        assert s["analysisStatus"] == "completed" and s["error"] is None


async def test_a_provider_without_an_api_key_ends_the_call_fast_with_the_reason(voice_stack):
    product, _server, _ = voice_stack
    # The product has keys for every fake; a Google Cloud TTS agent has no service-account file configured.
    agent_id = await _agent(product, ttsProvider="google")
    _status, tok = await product.request("POST", "/api/livekit/token", "alice", json={"agentId": agent_id})
    t0 = time.monotonic()
    s = await product.wait_session(
        tok["sessionId"], "alice", lambda s: s["endedAt"] is not None, timeout=20, what="ended"
    )
    assert time.monotonic() - t0 < 15
    assert s["endReason"] == "provider_error" and "VOXARENA_GOOGLE_CREDENTIALS_FILE" in s["error"]


async def test_a_broken_provider_ends_the_call_quickly_with_the_reason_recorded(voice_stack):
    product, _, fakes = voice_stack
    agent_id = await _agent(product, firstMessageMode="assistant_waits", firstMessage=None)
    fakes.script(failures={"gemini": "reject"})
    try:
        client, tok = await product.join(agent_id)
        try:
            await client.wait_for_agent()
            await client.publish_wav(speech_wav("What are your opening hours?"), trail_silence=0.3)
            t0 = time.monotonic()
            s = await product.wait_session(
                tok["sessionId"],
                "alice",
                lambda s: s["endedAt"] is not None,
                timeout=30,
                what="ended after the LLM failed",
            )
            assert time.monotonic() - t0 < 25
        finally:
            await client.disconnect()
    finally:
        fakes.script(failures={})
    assert s["endReason"] == "error" and s["error"] and "gemini" in s["error"].lower(), s


@pytest.mark.parametrize("stt,tts", [("assemblyai", "resemble"), ("elevenlabs", "elevenlabs")])
async def test_every_provider_answers_a_call_through_its_real_plugin(voice_stack, stt, tts):
    product, _, fakes = voice_stack
    before = fakes.counters()
    agent_id = await _agent(
        product, sttProvider=stt, ttsProvider=tts, firstMessageMode="assistant_waits", firstMessage=None
    )
    session_id, latency = await _call(product, agent_id, greet=False)
    s = await product.wait_session(session_id, "alice", _ended_with_analysis, timeout=45, what="ended")
    assert [t["speaker"] for t in s["transcript"]][:2] == ["USER", "AGENT"], s["transcript"]
    assert s["error"] is None and 0 < latency < 10
    after = fakes.counters()
    stt_key = "elevenlabs_stt" if stt == "elevenlabs" else stt
    tts_key = "elevenlabs_tts" if tts == "elevenlabs" else tts
    assert after[stt_key]["audio_seconds"] > before[stt_key]["audio_seconds"]
    assert after[tts_key]["characters"] > before[tts_key]["characters"]


async def test_the_room_gets_no_session_events_and_cannot_ask_the_agent_for_its_instructions(voice_stack):
    """LiveKit's session host would send the session's events (transcripts, tool calls and results, usage) to every
    participant, and answer any participant's request for the agent's instructions and history: the caller's room
    client hears the greeting, asks for the agent's instructions, says a turn and hears the reply, and by then has
    been sent nothing on the session topic."""
    from livekit.protocol.agent_pb import agent_session as agent_pb

    product, _, _ = voice_stack
    agent_id = await _agent(product, systemPrompt="Secret pricing rules: never go below 90 dollars.")
    client, _ = await product.join(agent_id, "alice")
    streams: list[str] = []
    client.room.register_byte_stream_handler(SESSION_TOPIC, lambda reader, who: streams.append(who))
    try:
        t0 = time.monotonic()
        agent = await client.wait_for_agent()
        await client.wait_for_audio(after=t0, min_nonsilent_s=0.5, timeout=30)  # the session has started
        ask = agent_pb.AgentSessionMessage(
            request=agent_pb.SessionRequest(request_id="r1", get_agent_info=agent_pb.SessionRequest.GetAgentInfo())
        )
        await client.room.local_participant.send_bytes(
            ask.SerializeToString(), name="AS_r1", topic=SESSION_TOPIC, destination_identities=[agent]
        )
        await client.wait_for_quiet(quiet_s=0.8, timeout=30)
        sent = await client.publish_wav(speech_wav("What are your opening hours?"), trail_silence=0.3)
        await client.wait_for_audio(after=sent.last_speech_at, min_nonsilent_s=0.5, timeout=30)
        await client.wait_for_quiet(quiet_s=0.8, timeout=30)
    finally:
        await client.disconnect()
    assert streams == []
