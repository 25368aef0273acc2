"""Fake ElevenLabs TTS: websocket `/v1/text-to-speech/{voice}/multi-stream-input` and REST
`POST /v1/text-to-speech/{voice}/stream`.

Multi-context websocket, as used by livekit-plugins-elevenlabs 1.8.9 (`elevenlabs/tts.py`):
  client -> {"text": " ", "voice_settings", "context_id"} (context init, not synthesized),
            {"text": "Hello world. ", "context_id", "flush"?}, {"text": "", "context_id",
            "flush": true}, {"context_id", "close_context": true}, {"close_socket": true}
  server -> {"audio": <b64>, "contextId", "normalizedAlignment"/"alignment": {chars,
            charStartTimesMs, charDurationsMs}} per generation, then {"isFinal": true,
            "contextId"} once a closed context has been fully synthesized.
Text is generated when flushed, when auto_mode=true, or once the buffer reaches the first
chunk_length_schedule entry (120 chars by default), like the real service.
Audio: pcm_<rate> is raw s16le mono; mp3_<rate>_<kbps> is real MP3 (the plugin's default).
Auth: `xi-api-key`; a bad key gets HTTP 401 {"detail": {"status": "invalid_api_key"}}.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
from dataclasses import dataclass
from typing import Any

from aiohttp import WSMsgType, web

from .audio import OutputFormat, render_speech
from .common import accepted_ws, drop, hang, json_response, read_until_stopped, state_of
from .state import ELEVENLABS_TTS, FakeState

_CHUNK_S = 0.25  # split generated audio into messages of this length, like a real stream
_INVALID_KEY = {"detail": {"status": "invalid_api_key", "message": "Invalid API key"}}


@dataclass
class _Context:
    buffer: str = ""
    spoken: bool = False  # first audio already sent (first-byte delay applies once)
    closed: bool = False
    schedule_first: int = 120


class MultiStreamConnection:
    def __init__(self, ws: web.WebSocketResponse, state: FakeState, fmt: OutputFormat, auto_mode: bool) -> None:
        self.ws = ws
        self.state = state
        self.fmt = fmt
        self.auto_mode = auto_mode
        self.contexts: dict[str, _Context] = {}
        # One ordered job queue per socket: generations and finals go out in arrival order.
        self._jobs: asyncio.Queue[tuple[str, str, str]] = asyncio.Queue()
        self._writer = asyncio.create_task(self._write_loop())

    def handle(self, data: dict[str, Any]) -> None:
        if data.get("close_socket"):
            self._jobs.put_nowait(("close", "", ""))
            return
        ctx_id = str(data.get("context_id") or data.get("contextId") or "")
        ctx = self.contexts.get(ctx_id)
        if ctx is None:
            if "text" not in data:
                return  # e.g. close_context for a context that never started
            ctx = self.contexts[ctx_id] = _Context()
            self.state.add(ELEVENLABS_TTS, "requests")
            schedule = (data.get("generation_config") or {}).get("chunk_length_schedule")
            if schedule:
                ctx.schedule_first = int(schedule[0])
            if data.get("text") == " ":
                return  # the context-initialisation packet carries no speech
        if ctx.closed:
            return
        text = data.get("text")
        if text:
            self.state.add(ELEVENLABS_TTS, "characters", len(text))
            self.state.add(ELEVENLABS_TTS, "characters_nonspace", len("".join(text.split())))
            self.state.record(ELEVENLABS_TTS, {"context_id": ctx_id, "text": text})
            ctx.buffer += text
        close = bool(data.get("close_context"))
        if ctx.buffer and (close or data.get("flush") or self.auto_mode or len(ctx.buffer) >= ctx.schedule_first):
            self._jobs.put_nowait(("speak", ctx_id, ctx.buffer))
            ctx.buffer = ""
        if close:
            ctx.closed = True
            self._jobs.put_nowait(("final", ctx_id, ""))

    async def finish(self) -> None:
        self._writer.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._writer

    async def _write_loop(self) -> None:
        try:
            while True:
                kind, ctx_id, text = await self._jobs.get()
                if kind == "close":
                    await self.ws.close()
                    return
                if kind == "final":
                    await self.ws.send_json({"isFinal": True, "contextId": ctx_id})
                    continue
                await self._speak(ctx_id, text)
        except (ConnectionError, RuntimeError):
            return  # client went away

    async def _speak(self, ctx_id: str, text: str) -> None:
        ctx = self.contexts[ctx_id]
        script = self.state.script
        audio, duration = await render_speech(text, self.fmt, script.tts_ms_per_char)
        if not audio:
            return
        if not ctx.spoken and script.tts_first_byte_delay_ms:
            await asyncio.sleep(script.tts_first_byte_delay_ms / 1000)
        ctx.spoken = True
        self.state.add(ELEVENLABS_TTS, "audio_seconds_out", duration)
        alignment = _alignment(text, duration)
        for i, chunk in enumerate(_chunks(audio, self.fmt)):
            msg: dict[str, Any] = {"audio": base64.b64encode(chunk).decode(), "contextId": ctx_id}
            if i == 0:
                msg["normalizedAlignment"] = alignment
                msg["alignment"] = alignment
            await self.ws.send_json(msg)


def _chunks(audio: bytes, fmt: OutputFormat) -> list[bytes]:
    # PCM chunks stay sample-aligned; MP3 may be cut anywhere (the client decodes a stream).
    size = int(fmt.sample_rate * _CHUNK_S) * 2 if fmt.codec == "pcm" else 4096
    return [audio[i : i + size] for i in range(0, len(audio), size)]


def _alignment(text: str, duration_s: float) -> dict[str, list[Any]]:
    chars = list(text)
    step = duration_s * 1000 / max(1, len(chars))
    return {
        "chars": chars,
        "charStartTimesMs": [int(i * step) for i in range(len(chars))],
        "charDurationsMs": [max(1, int(step))] * len(chars),
    }


def _format(request: web.Request) -> OutputFormat | None:
    try:
        return OutputFormat.parse(request.query.get("output_format", "mp3_44100_128"))
    except ValueError:
        return None


async def handle_multi_stream(request: web.Request) -> web.StreamResponse:
    state = state_of(request)
    if not state.key_ok(request.headers.get("xi-api-key")):
        state.add(ELEVENLABS_TTS, "auth_failures")
        return json_response(401, _INVALID_KEY)
    failure = state.take_failure(ELEVENLABS_TTS)
    if failure == "reject":
        return json_response(500, {"detail": {"status": "internal_error", "message": "fake"}})
    fmt = _format(request)
    if fmt is None:
        return json_response(400, {"detail": {"status": "invalid_output_format", "message": "fake"}})
    state.record(ELEVENLABS_TTS, {"query": dict(request.query), "voice_id": request.match_info["voice"]})

    async with accepted_ws(request) as ws:
        state.add(ELEVENLABS_TTS, "connections")
        if failure == "hang":
            await read_until_stopped(request, ws)
            state.add(ELEVENLABS_TTS, "closed")
            return ws
        conn = MultiStreamConnection(ws, state, fmt, request.query.get("auto_mode") == "true")
        try:
            async for msg in ws:
                if msg.type != WSMsgType.TEXT:
                    continue
                data = json.loads(msg.data)
                if failure == "drop" and (data.get("text") or "").strip():
                    await drop(ws)
                    break
                conn.handle(data)
        finally:
            await conn.finish()
            state.add(ELEVENLABS_TTS, "closed")
    return ws


async def handle_stream_rest(request: web.Request) -> web.StreamResponse:
    """Batch synthesis (the plugin's `synthesize()`): JSON {text, model_id, ...} -> audio body."""
    state = state_of(request)
    if not state.key_ok(request.headers.get("xi-api-key")):
        state.add(ELEVENLABS_TTS, "auth_failures")
        return json_response(401, _INVALID_KEY)
    failure = state.take_failure(ELEVENLABS_TTS)
    if failure == "reject":
        return json_response(500, {"detail": {"status": "internal_error", "message": "fake"}})
    if failure == "hang":
        await hang(request)
        return json_response(503, {"detail": {"status": "shutting_down"}})
    fmt = _format(request)
    if fmt is None:
        return json_response(400, {"detail": {"status": "invalid_output_format", "message": "fake"}})
    body = await request.json()
    text = str(body.get("text", ""))
    state.add(ELEVENLABS_TTS, "requests")
    state.add(ELEVENLABS_TTS, "characters", len(text))
    state.add(ELEVENLABS_TTS, "characters_nonspace", len("".join(text.split())))
    state.record(ELEVENLABS_TTS, {"rest": True, "text": text, "model_id": body.get("model_id")})

    audio, duration = await render_speech(text, fmt, state.script.tts_ms_per_char)
    if state.script.tts_first_byte_delay_ms:
        await asyncio.sleep(state.script.tts_first_byte_delay_ms / 1000)
    resp = web.StreamResponse(headers={"Content-Type": fmt.mime_type})
    await resp.prepare(request)
    chunks = _chunks(audio, fmt)
    if failure == "drop":
        # Die mid-body: half a chunk, then the TCP connection goes away.
        await resp.write(chunks[0][: len(chunks[0]) // 2] if chunks else b"")
        if request.transport is not None:
            request.transport.close()
        return resp
    for chunk in chunks:
        await resp.write(chunk)
    state.add(ELEVENLABS_TTS, "audio_seconds_out", duration)
    await resp.write_eof()
    return resp
