"""The live event stream of real calls through the whole product: `voxarena serve` (its jobs in their own processes)
on a real livekit-server, a caller that speaks, the provider fakes; a websocket on /events/ws receives what the job
process and the API write, in order."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import aiohttp

from tests.harness.audio import speech_wav

GREETING = "Hello! Thanks for calling. How can I help?"
QUESTION = "What are your opening hours?"
REPLY = "We are open from nine to five, every weekday."


class Stream:
    """A subscriber on /events/ws keeping every event it receives."""

    def __init__(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        self.ws = ws
        self.events: list[dict[str, Any]] = []
        self._task = asyncio.ensure_future(self._read())

    async def _read(self) -> None:
        async for msg in self.ws:
            if msg.type == aiohttp.WSMsgType.TEXT:
                self.events.append(json.loads(msg.data))

    async def wait_for(
        self, predicate: Callable[[dict[str, Any]], bool], *, timeout: float, what: str
    ) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while True:
            hit = next((e for e in self.events if predicate(e)), None)
            if hit is not None:
                return hit
            assert not self._task.done(), f"the stream closed before {what}: {self.events}"
            assert time.monotonic() < deadline, f"{what} not received in {timeout}s: {self.events}"
            await asyncio.sleep(0.05)

    def of(self, call_sid: str) -> list[dict[str, Any]]:
        return [e for e in self.events if e["call_sid"] == call_sid]


@contextlib.asynccontextmanager
async def stream(product, query: str = "") -> AsyncIterator[Stream]:
    url = product.base_url.replace("http://", "ws://") + f"/events/ws?token={product.token('alice')}{query}"
    async with aiohttp.ClientSession() as http:
        ws = await http.ws_connect(url)
        s = Stream(ws)
        try:
            yield s
        finally:
            await ws.close()
            s._task.cancel()
            await asyncio.gather(s._task, return_exceptions=True)


def _index(events: list[dict[str, Any]], predicate: Callable[[dict[str, Any]], bool]) -> int:
    return next(i for i, e in enumerate(events) if predicate(e))


async def test_a_real_calls_events_arrive_in_order_from_start_to_end(voice_stack):
    product, _, _ = voice_stack
    agent_id = await product.create_agent(firstMessage=GREETING)
    async with stream(product) as events:
        client, tok = await product.join(agent_id)
        sid = tok["sessionId"]
        try:
            await events.wait_for(
                lambda e: e["type"] == "call.started" and e["call_sid"] == sid, timeout=30, what="call.started"
            )
            await client.wait_for_audio(min_nonsilent_s=0.5, timeout=30)
            await client.wait_for_quiet(quiet_s=0.8, timeout=30)  # the greeting played
            status, body = await product.request(
                "PUT", f"/api/calls/{sid}/context", json={"context": {"customer": "Ada"}}
            )
            assert status == 200, body
            sent = await client.publish_wav(speech_wav(QUESTION), trail_silence=0.3)
            await client.wait_for_audio(after=sent.last_speech_at, min_nonsilent_s=0.5, timeout=30)
            await client.wait_for_quiet(quiet_s=0.8, timeout=30)  # the reply played
        finally:
            await client.disconnect()
        ended = await events.wait_for(
            lambda e: e["type"] == "call.ended" and e["call_sid"] == sid, timeout=45, what="call.ended"
        )
        got = events.of(sid)
    types = [e["type"] for e in got]
    assert types[0] == "call.started" and types[-1] == "call.ended", types
    assert [e["id"] for e in got] == sorted(e["id"] for e in got)
    greeting = _index(got, lambda e: e["type"] == "transcript.final" and e["text"] == GREETING)
    context = _index(got, lambda e: e["type"] == "context.updated")
    partial = _index(got, lambda e: e["type"] == "transcript.partial")
    user = _index(got, lambda e: e["type"] == "transcript.final" and e["speaker"] == "user")
    reply = _index(got, lambda e: e["type"] == "transcript.final" and e["speaker"] == "agent" and e["text"] == REPLY)
    assert 0 < greeting < context < partial < user < reply < len(got) - 1, types
    assert got[greeting]["speaker"] == "agent" and got[context]["context"] == {"customer": "Ada"}
    assert got[partial]["speaker"] == "user" and got[partial]["text"] and got[partial]["text"] in QUESTION
    assert got[user]["text"] == QUESTION
    assert isinstance(ended["duration"], int) and ended["duration"] >= 3, ended
    assert ended["reason"] == "participant_disconnected" and ended["error"] is None, ended
    assert "error" not in types, got
    # the same events, stored for the call
    status, listed = await product.request("GET", f"/api/calls/{sid}/events")
    assert status == 200 and [e["id"] for e in listed["events"]] == [e["id"] for e in got], listed
    status, _ = await product.request("GET", f"/api/calls/{sid}/events", "mallory")
    assert status == 404


async def test_a_call_whose_llm_fails_streams_the_error_before_its_end(voice_stack):
    product, _, fakes = voice_stack
    agent_id = await product.create_agent(firstMessageMode="assistant_waits")
    status, tok = await product.request("POST", "/api/livekit/token", "alice", json={"agentId": agent_id})
    assert status == 200, tok
    sid = tok["sessionId"]
    async with stream(product, f"&call_sid={sid}") as events:
        from tests.harness.client import AudioRoomClient

        client = AudioRoomClient(tok["serverUrl"], tok["token"], identity=tok["identity"])
        await client.connect()
        fakes.script(failures={"gemini": "reject"})
        try:
            await events.wait_for(lambda e: e["type"] == "call.started", timeout=30, what="call.started")
            await client.wait_for_agent()
            await client.publish_wav(speech_wav(QUESTION), trail_silence=0.3)
            ended = await events.wait_for(lambda e: e["type"] == "call.ended", timeout=45, what="call.ended")
        finally:
            fakes.script(failures={})
            await client.disconnect()
        got = list(events.events)
    assert {e["call_sid"] for e in got} == {sid}
    errors = [e for e in got if e["type"] == "error"]
    assert errors, got
    fatal = next(e for e in errors if e.get("recoverable") is False)
    assert fatal["stage"] == "llm" and fatal["detail"].startswith("llm provider gemini failed"), fatal
    assert got.index(fatal) < got.index(ended)
    assert ended["reason"] == "error" and ended["error"] == fatal["detail"], ended
    # the end repeats no failure the recorder already streamed (the provider's retries came first, recoverable)
    assert [e for e in errors if "stage" not in e] == [] and [e["recoverable"] for e in errors][-1] is False, errors
