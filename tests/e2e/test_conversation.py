"""How a conversation feels, through the whole product with its default turn settings: a finished sentence is
answered without dead air, an unfinished one is waited for, and a long call has every turn answered."""

from __future__ import annotations

from pipelines.turn_clock import MARKS
from tests.harness.audio import speech_wav

QUESTION = "What are your opening hours?"


async def _agent(product) -> str:
    status, agent = await product.request(
        "POST",
        "/api/agents",
        "alice",
        json={
            "name": "Turns",
            "systemPrompt": "You answer questions about opening hours.",
            "sttProvider": "deepgram",
            "llmProvider": "gemini",
            "ttsProvider": "elevenlabs",
            "firstMessageMode": "assistant_waits",
        },
    )
    assert status == 201, agent
    return agent["id"]


def _replies(session: dict) -> list[dict]:
    return [t for t in session["transcript"] if t["speaker"] == "AGENT"]


async def test_an_unfinished_sentence_is_waited_for_and_a_finished_one_answered_at_once(voice_stack):
    product, _, fakes = voice_stack
    agent_id = await _agent(product)
    fakes.script(stt_transcripts=["So my number is", QUESTION])
    try:
        client, tok = await product.join(agent_id)
        try:
            await client.wait_for_agent()  # the agent waits for the caller: asked before it joined, it hears nothing
            sent = await client.publish_wav(speech_wav("So my number is"))
            try:
                early = await client.wait_for_audio(after=sent.last_speech_at, timeout=1.2)
            except TimeoutError:
                early = None
            assert early is None, f"the agent spoke {early - sent.last_speech_at:.2f}s after an unfinished turn"
            await client.wait_for_audio(after=sent.last_speech_at, min_nonsilent_s=0.3, timeout=20)
            await client.wait_for_quiet(quiet_s=0.8, timeout=30)
            sent = await client.publish_wav(speech_wav(QUESTION))
            heard = await client.wait_for_audio(after=sent.last_speech_at, min_nonsilent_s=0.3, timeout=20)
            await client.wait_for_quiet(quiet_s=0.8, timeout=30)
        finally:
            await client.disconnect()
    finally:
        fakes.script(stt_transcripts=[])
    s = await product.wait_session(
        tok["sessionId"], "alice", lambda s: s["endedAt"] is not None, timeout=30, what="ended"
    )
    users = [t["content"] for t in s["transcript"] if t["speaker"] == "USER"]
    assert users == ["So my number is", QUESTION], s["transcript"]
    unfinished, finished = (r["metrics"]["end_of_turn_delay"] for r in _replies(s)[:2])
    assert unfinished >= 2.5, s["transcript"]  # the whole max_delay (3 s): the caller had time to go on
    assert finished < 1.0, s["transcript"]
    assert heard - sent.last_speech_at < 5


async def test_a_thirty_turn_call_has_every_turn_answered(voice_stack):
    product, _, fakes = voice_stack
    agent_id = await _agent(product)
    wav = speech_wav(QUESTION)
    fakes.script(llm_replies=["Nine to five."] * 30)  # short replies keep the call short
    before = fakes.counters().get("gemini", {})  # the stack's fakes are shared: count this call's requests only
    client, tok = await product.join(agent_id)
    unanswered, measured = [], []
    try:
        await client.wait_for_agent()
        for n in range(30):
            sent = await client.publish_wav(wav)
            try:
                heard = await client.wait_for_audio(after=sent.last_speech_at, min_nonsilent_s=0.3, timeout=15)
            except TimeoutError:
                unanswered.append(n)
                continue
            measured.append(heard - sent.last_speech_at)
            await client.wait_for_quiet(quiet_s=0.6, timeout=30)
    finally:
        await client.disconnect()
        fakes.script(llm_replies=[])
    assert not unanswered, f"turns {unanswered} of 30 got no reply within 15 s"
    s = await product.wait_session(
        tok["sessionId"], "alice", lambda s: s["endedAt"] is not None, timeout=30, what="ended"
    )
    speakers = [t["speaker"] for t in s["transcript"]]
    assert speakers.count("USER") == 30 and speakers.count("AGENT") == 30, speakers
    for reply, client_s in zip(_replies(s), measured, strict=False):
        m = reply["metrics"]
        assert m["e2e_latency"] > 0 and m["voice_to_voice"] > 0, m
        # every hop was timed, they add up to the stored voice-to-voice, and the agent cannot have answered later
        # than the caller heard it (both are durations on this machine's monotonic clock)
        assert sorted(h["mark"] for h in m["hops"]) == sorted(MARKS), m
        assert abs(sum(h["seconds"] for h in m["hops"]) - m["voice_to_voice"]) <= 0.01, m
        assert m["voice_to_voice"] <= client_s + 0.05, (m, client_s)
        # preemptive generation (on by default) started each reply's LLM request on the STT final and kept it
        assert m["llm_requests"] == 1, m
    gemini = fakes.counters()["gemini"]
    text_requests = (gemini["requests"] - gemini.get("json_requests", 0)) - (
        before.get("requests", 0) - before.get("json_requests", 0)
    )
    assert text_requests == 30, (before, gemini)  # no turn answered twice
