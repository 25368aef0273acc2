"""Autonomite's POST /trigger-agent through the whole product (`voxarena serve` on a real livekit-server, the
provider fakes in their own process): voice mode dispatches a real agent into the named room, which greets and
answers the caller; text mode answers in the same process without holding up the call."""

from __future__ import annotations

import uuid

from tests.e2e.test_voice_calls import GREETING, _agent, _ended_with_analysis
from tests.harness.audio import speech_wav
from tests.harness.client import AudioRoomClient


async def test_voice_mode_dispatches_the_agent_into_the_room_and_keeps_the_callers_ids(voice_stack):
    product, _, _fakes = voice_stack
    slug = f"desk-{uuid.uuid4().hex[:8]}"  # the stack is shared: other tests' agents have their own slugs
    await _agent(product, slug=slug)
    room = f"site-{uuid.uuid4().hex[:8]}"
    status, body = await product.request(
        "POST",
        "/trigger-agent",
        json={
            "room_name": room,
            "agent_slug": slug,
            "user_id": "wp-user-7",
            "conversation_id": "conv-42",
            "platform": "livekit",
        },
    )
    assert status == 200, body
    assert body["success"] is True and body["mode"] == "voice" and body["room_name"] == room
    assert body["server_url"] and body["token"] and body["session_id"]
    client = AudioRoomClient(body["server_url"], body["token"], identity=body["identity"])
    await client.connect()
    try:
        await client.wait_for_audio(min_nonsilent_s=0.5, timeout=30)  # the agent's greeting
        await client.wait_for_quiet(quiet_s=0.8, timeout=30)
        # a text conversation with the same agent while the call runs: answered in the API process
        status, text = await product.request(
            "POST",
            "/trigger-agent",
            json={
                "message": "When are you open?",
                "agent_slug": slug,
                "user_id": "wp-user-7",
                "conversation_id": "conv-42",
                "mode": "text",
            },
        )
        assert status == 200 and text["response"] == "We are open from nine to five, every weekday.", text
        sent = await client.publish_wav(speech_wav("What are your opening hours?"), trail_silence=0.3)
        await client.wait_for_audio(after=sent.last_speech_at, min_nonsilent_s=0.5, timeout=30)
        await client.wait_for_quiet(quiet_s=0.8, timeout=30)
    finally:
        await client.disconnect()
    s = await product.wait_session(
        body["session_id"], "alice", _ended_with_analysis, timeout=45, what="ended and analysed"
    )
    assert s["channel"] == "voice" and s["roomName"] == room
    assert (s["user_id"], s["conversation_id"]) == ("wp-user-7", "conv-42")
    assert s["transcript"][0] == {**s["transcript"][0], "speaker": "AGENT", "content": GREETING}
    assert any(t["speaker"] == "USER" for t in s["transcript"])
    status, t = await product.request("GET", f"/api/sessions/{text['session_id']}")
    assert status == 200 and t["channel"] == "text" and t["conversation_id"] == "conv-42"
    status, voices = await product.request("GET", "/api/sessions?channel=voice")
    assert body["session_id"] in [v["id"] for v in voices["sessions"]]
    assert text["session_id"] not in [v["id"] for v in voices["sessions"]]
