"""Web calls that end badly, through the whole product and a real livekit-server: a provider failing for good makes
the agent apologise and then close the call's room, so the caller is disconnected within two seconds of the
apology's last audio instead of being left alone in an open room; the session ends at that instant."""

from __future__ import annotations

import asyncio
import time

from livekit import api

from core.store.timefmt import parse_iso
from pipelines.config import DEFAULT_ERROR_MESSAGE
from tests.harness.audio import speech_wav

GREETING = "Hello! Thanks for calling. How can I help?"
QUESTION = "What are your opening hours?"


async def _rooms(server) -> set[str]:
    async with server.api() as lk:
        return {r.name for r in (await lk.room.list_rooms(api.ListRoomsRequest())).rooms}


async def test_a_failing_provider_on_a_web_call_disconnects_the_caller_within_two_seconds_of_the_apology(voice_stack):
    product, server, fakes = voice_stack
    agent_id = await product.create_agent(firstMessage=GREETING)
    client, tok = await product.join(agent_id)
    disconnected = client.disconnected()
    try:
        await client.wait_for_audio(min_nonsilent_s=0.5, timeout=30)
        await client.wait_for_quiet(quiet_s=0.8, timeout=30)
        with fakes.failing(gemini="reject"):
            sent = await client.publish_wav(speech_wav(QUESTION), trail_silence=0.3)
            # the LLM is down for good: what the caller hears now is the apology, and then the call is closed
            await client.wait_for_audio(after=sent.last_speech_at, min_nonsilent_s=1.0, timeout=40)
            gone_at = await asyncio.wait_for(disconnected, 40)
        apology_end = max(f.at for f in client.received if f.dbfs > client.silence_dbfs)  # its last audible frame
    finally:
        await client.disconnect()
    assert 0 <= gone_at - apology_end <= 2.0, gone_at - apology_end
    assert tok["roomName"] not in await _rooms(server)
    s = await product.wait_session(
        tok["sessionId"], "alice", lambda s: s["status"] == "ended", timeout=20, what="ended"
    )
    assert s["endReason"] == "error" and s["error"].startswith("llm provider gemini failed"), s
    assert [(t["speaker"], t["content"]) for t in s["transcript"]][-1] == ("AGENT", DEFAULT_ERROR_MESSAGE)
    # the session ended at the hang-up: within two seconds of the apology's end on the caller's clock
    apology_end_wall = time.time() - (time.monotonic() - apology_end)
    assert abs(parse_iso(s["endedAt"]).timestamp() - apology_end_wall) <= 2.0, (s["endedAt"], apology_end_wall)
