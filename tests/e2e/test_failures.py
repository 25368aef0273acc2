"""Calls whose providers fail mid-call, through the whole product: the caller hears an apology before the agent hangs
up, the caller's last words stay in the transcript, the error names the provider; fallback providers take over
instead, and analyse the call (through the fallback LLM when the primary is down); a call where the caller never
speaks is not analysed and not billed for an analysis."""

from __future__ import annotations

from pipelines.config import DEFAULT_ERROR_MESSAGE
from tests.e2e.conftest import ANALYSIS_JSON
from tests.harness.audio import speech_wav

GREETING = "Hello! Thanks for calling. How can I help?"
QUESTION = "What are your opening hours?"
REPLY = "We are open from nine to five, every weekday."


async def _agent(product, **over) -> str:
    return await product.create_agent(firstMessage=GREETING, **over)


async def _greeted(client) -> None:
    await client.wait_for_audio(min_nonsilent_s=0.5, timeout=30)
    await client.wait_for_quiet(quiet_s=0.8, timeout=30)


async def _ask(client, text: str = QUESTION) -> float:
    """Say something; returns the time the agent's answer started (monotonic), once it played out."""
    sent = await client.publish_wav(speech_wav(text), trail_silence=0.3)
    heard = await client.wait_for_audio(after=sent.last_speech_at, min_nonsilent_s=0.5, timeout=30)
    await client.wait_for_quiet(quiet_s=0.8, timeout=30)
    return heard


async def _call_failing_over(product, fakes, agent_id: str, failures: dict[str, str], asks_after: int) -> str:
    """A call: the greeting, one answered question, then `asks_after` questions while `failures` hold."""
    client, tok = await product.join(agent_id)
    try:
        await _greeted(client)
        await _ask(client)
        with fakes.failing(**failures):
            for _ in range(asks_after):
                await _ask(client)
    finally:
        await client.disconnect()
    return tok["sessionId"]


async def _analysed(product, session_id: str) -> dict:
    s = await product.wait_session(
        session_id,
        "alice",
        lambda s: s["analysisStatus"] not in (None, "pending"),
        timeout=45,
        what="ended and analysed",
    )
    assert s["analysisStatus"] == "completed" and s["analysis"] == ANALYSIS_JSON, s
    return s


async def _analysis_providers(product, session_id: str) -> set[str]:
    status, breakdown = await product.request("GET", f"/api/sessions/{session_id}/cost-breakdown")
    assert status == 200
    return {e["provider"] for e in breakdown["events"] if "/analysis/" in e["idempotency_key"]}


async def test_an_llm_failing_mid_call_apologises_keeps_the_callers_words_and_names_the_provider(voice_stack):
    product, _, fakes = voice_stack
    agent_id = await _agent(product)
    client, tok = await product.join(agent_id)
    try:
        await _greeted(client)
        with fakes.failing(gemini="reject"):
            sent = await client.publish_wav(speech_wav(QUESTION), trail_silence=0.3)
            # The LLM is down for good: what the caller hears now can only be the apology.
            await client.wait_for_audio(after=sent.last_speech_at, min_nonsilent_s=1.0, timeout=40)
            s = await product.wait_session(
                tok["sessionId"],
                "alice",
                lambda s: s["endedAt"] is not None,
                timeout=40,
                what="ended after the apology",
            )
    finally:
        await client.disconnect()
    assert s["endReason"] == "error", s
    assert s["error"].startswith("llm provider gemini failed with status 500"), s["error"]
    items = [(t["speaker"], t["content"]) for t in s["transcript"]]
    assert items[0] == ("AGENT", GREETING)
    assert ("USER", QUESTION) in items, items
    assert items[-1] == ("AGENT", DEFAULT_ERROR_MESSAGE), items
    spoken = " ".join(e.get("text") or "" for e in fakes.log("elevenlabs_tts"))
    assert "technical problem" in spoken


async def test_a_fallback_llm_takes_over_mid_call_every_turn_is_answered_and_the_healed_primary_analyses(voice_stack):
    product, _, fakes = voice_stack
    agent_id = await _agent(product, fallbackLlmProviders=["openai"])
    before = fakes.counters()
    session_id = await _call_failing_over(product, fakes, agent_id, {"gemini": "reject"}, asks_after=2)
    s = await _analysed(product, session_id)
    assert await _analysis_providers(product, session_id) == {"gemini"}  # healthy again when the call ended
    assert s["error"] is None and s["endReason"] == "participant_disconnected", s
    agent_turns = [t for t in s["transcript"] if t["speaker"] == "AGENT"][1:]  # after the greeting
    assert [t["content"] for t in agent_turns] == [REPLY] * 3, s["transcript"]
    assert [t["providers"]["llm"] for t in agent_turns] == ["gemini", "openai", "openai"], agent_turns
    after = fakes.counters()
    assert after["openai"]["completed"] - before["openai"]["completed"] >= 2


async def test_with_the_primary_llm_down_for_the_whole_call_the_fallback_answers_and_analyses_it(voice_stack):
    product, _, fakes = voice_stack
    agent_id = await _agent(product, fallbackLlmProviders=["openai"])
    before = fakes.counters()
    with fakes.failing(gemini="reject"):  # until the analysis is stored
        client, tok = await product.join(agent_id)
        try:
            await _greeted(client)
            await _ask(client)
        finally:
            await client.disconnect()
        s = await _analysed(product, tok["sessionId"])
    assert s["error"] is None and s["endReason"] == "participant_disconnected", s
    replies = [t for t in s["transcript"] if t["speaker"] == "AGENT"][1:]  # after the greeting
    assert [(t["content"], t["providers"]["llm"]) for t in replies] == [(REPLY, "openai")], s["transcript"]
    assert await _analysis_providers(product, tok["sessionId"]) == {"openai"}
    after = fakes.counters()
    assert after["gemini"]["completed"] == before["gemini"]["completed"]
    assert after["openai"]["json_requests"] - before["openai"]["json_requests"] == 1
    # every token the fallback counted for this call (its reply and the analysis) is billed to the session, once
    status, breakdown = await product.request("GET", f"/api/sessions/{tok['sessionId']}/cost-breakdown")
    assert status == 200
    billed = [e for e in breakdown["events"] if e["event_type"] == "llm_tokens"]
    assert {e["provider"] for e in billed} == {"openai"}, billed
    for kind, counter in (("input", "prompt_tokens"), ("output", "completion_tokens")):
        assert (
            sum(e["quantity"] for e in billed if e["token_kind"] == kind)
            == after["openai"][counter] - before["openai"][counter]
        ), (kind, billed)


async def test_a_fallback_stt_takes_over_when_the_primary_dies_mid_call(voice_stack):
    product, _, fakes = voice_stack
    agent_id = await _agent(product, fallbackSttProviders=["assemblyai"])
    before = fakes.counters()
    # the open Deepgram socket dies, and every new one
    session_id = await _call_failing_over(product, fakes, agent_id, {"deepgram": "drop"}, asks_after=1)
    # the analysis too: its LLM request must not land in the next test's counters
    s = await _analysed(product, session_id)
    assert s["error"] is None and s["endReason"] == "participant_disconnected", s
    speakers = [t["speaker"] for t in s["transcript"]]
    assert speakers == ["AGENT", "USER", "AGENT", "USER", "AGENT"], s["transcript"]
    agent_turns = [t for t in s["transcript"] if t["speaker"] == "AGENT"][1:]
    assert [t["providers"].get("stt") for t in agent_turns] == ["deepgram", "assemblyai"], agent_turns
    after = fakes.counters()
    assert after["assemblyai"]["audio_seconds"] > before["assemblyai"]["audio_seconds"]
    assert after["deepgram"]["injected_failures"] > before["deepgram"]["injected_failures"]


async def test_a_call_where_the_caller_never_speaks_is_not_analysed_and_bills_no_llm_tokens(voice_stack):
    product, _, fakes = voice_stack
    agent_id = await _agent(product)
    before = fakes.counters()["gemini"]
    client, tok = await product.join(agent_id)
    try:
        await _greeted(client)
    finally:
        await client.disconnect()
    s = await product.wait_session(
        tok["sessionId"],
        "alice",
        lambda s: s["analysisStatus"] not in (None, "pending"),
        timeout=45,
        what="ended with its analysis decided",
    )
    assert s["analysisStatus"] == "skipped" and "never spoke" in s["analysisError"] and s["analysis"] is None, s
    status, analysis = await product.request("GET", f"/api/sessions/{tok['sessionId']}/analysis")
    assert status == 200 and analysis is None
    after = fakes.counters()["gemini"]
    assert after["requests"] == before["requests"]
    status, breakdown = await product.request("GET", f"/api/sessions/{tok['sessionId']}/cost-breakdown")
    assert status == 200 and not [e for e in breakdown["events"] if e["event_type"] == "llm_tokens"], breakdown
    assert [e for e in breakdown["events"] if e["event_type"] == "tts_characters"], breakdown  # the greeting
