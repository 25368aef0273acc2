"""The floor for voice-to-voice latency: a minimal hand-written agent in a real LiveKit room, talking to the same
provider fakes with plain asyncio and aiohttp: no agents framework, no VAD, no turn detector, no store. The room
client measures it exactly as it measures the product, so product minus floor is what the framework costs."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import time

import aiohttp
from livekit import rtc

from pipelines.turn_clock import LOUD_DBFS, frame_dbfs

RATE = 16000


class FloorAgent:
    def __init__(self, url: str, token: str, fakes_urls: dict[str, str], key: str) -> None:
        self.url, self.token, self.urls, self.key = url, token, fakes_urls, key
        self.room = rtc.Room()
        self.source = rtc.AudioSource(RATE, 1, queue_size_ms=200)
        self._tasks: set[asyncio.Task[None]] = set()
        self._http: aiohttp.ClientSession | None = None
        # its own voice-to-voice per reply: last loud input frame to first reply frame handed to the room, as the
        # product's TurnClock measures it
        self.v2v: list[float] = []
        self._last_loud: float | None = None

    async def start(self) -> None:
        self._http = aiohttp.ClientSession()
        self.room.on("track_subscribed", self._on_track)
        await self.room.connect(self.url, self.token, rtc.RoomOptions(auto_subscribe=True))
        track = rtc.LocalAudioTrack.create_audio_track("agent", self.source)
        await self.room.local_participant.publish_track(
            track, rtc.TrackPublishOptions(source=rtc.TrackSource.SOURCE_MICROPHONE)
        )

    async def stop(self) -> None:
        for t in list(self._tasks):
            t.cancel()
        for t in list(self._tasks):
            with contextlib.suppress(BaseException):
                await t
        await self.room.disconnect()
        if self._http:
            await self._http.close()

    def _spawn(self, coro) -> None:
        t = asyncio.ensure_future(coro)
        self._tasks.add(t)
        t.add_done_callback(self._tasks.discard)

    def _on_track(self, track: rtc.Track, *_: object) -> None:
        if track.kind == rtc.TrackKind.KIND_AUDIO:
            self._spawn(self._listen(track))

    async def _listen(self, track: rtc.Track) -> None:
        assert self._http is not None
        stt = await self._http.ws_connect(
            self.urls["deepgram_url"].replace("http", "ws", 1)
            + f"?encoding=linear16&sample_rate={RATE}&channels=1&interim_results=false&vad_events=true",
            headers={"Authorization": f"Token {self.key}"},
        )

        async def pump() -> None:
            async for ev in rtc.AudioStream(track, sample_rate=RATE, num_channels=1):
                if frame_dbfs(ev.frame.data) > LOUD_DBFS:
                    self._last_loud = time.monotonic()
                await stt.send_bytes(bytes(ev.frame.data))

        self._spawn(pump())
        async for msg in stt:
            data = json.loads(msg.data)
            if data.get("type") == "Results" and data.get("is_final") and data.get("speech_final"):
                text = data["channel"]["alternatives"][0]["transcript"]
                if text:
                    self._spawn(self._reply(text))

    async def _reply(self, text: str) -> None:
        assert self._http is not None
        body = {"contents": [{"role": "user", "parts": [{"text": text}]}]}
        reply = []
        tts = await self._http.ws_connect(
            self.urls["elevenlabs_base_url"].replace("http", "ws", 1)
            + "/text-to-speech/voice/multi-stream-input?model_id=eleven_turbo_v2_5&output_format=pcm_16000",
            headers={"xi-api-key": self.key},
        )
        await tts.send_json({"text": " ", "context_id": "c"})
        async with self._http.post(
            self.urls["gemini_base_url"] + "/v1/models/gemini-2.5-flash:streamGenerateContent?alt=sse",
            json=body,
            headers={"x-goog-api-key": self.key},
        ) as r:
            async for line in r.content:
                if line.startswith(b"data:"):
                    for part in json.loads(line[5:])["candidates"][0]["content"]["parts"]:
                        if part.get("text"):
                            reply.append(part["text"])
                            await tts.send_json({"text": part["text"] + " ", "context_id": "c"})
        await tts.send_json({"text": "", "context_id": "c", "flush": True})
        pending, first = b"", True
        async for msg in tts:
            data = json.loads(msg.data)
            if data.get("audio"):
                pending += base64.b64decode(data["audio"])
                n = len(pending) // 2 * 2
                if n:
                    pcm, pending = pending[:n], pending[n:]
                    # stamped as the audio is handed over, as the product's `published` is: a capture returns only
                    # once its audio fits the source's 200 ms queue, ~50 ms into a 250 ms chunk
                    if first and self._last_loud is not None:
                        self.v2v.append(time.monotonic() - self._last_loud)
                    first = False
                    await self.source.capture_frame(rtc.AudioFrame(pcm, RATE, 1, n // 2))
            if data.get("isFinal"):
                break
        await tts.close()
