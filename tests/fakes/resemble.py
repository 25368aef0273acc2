"""Fake Resemble TTS: websocket `/resemble/stream` and REST `POST /resemble/synthesize`.

The plugin has no URL arguments: it reads the module globals
`livekit.plugins.resemble.tts.RESEMBLE_WEBSOCKET_URL` / `RESEMBLE_REST_API_URL` at call time,
so point them at `FakeProviders.resemble_ws_url` / `.resemble_rest_url` (monkeypatch in
process; in a worker process the product must set them the same way).

Websocket (one request per sentence, as livekit-plugins-resemble 1.8.9 sends):
  client -> {"voice_uuid", "data": <sentence>, "request_id": n, "sample_rate",
             "precision": "PCM_16", "output_format": "mp3"}
  server -> {"type": "audio", "audio_content": <b64 MP3 bytes>, "request_id"} ... then
            {"type": "audio_end", "request_id": n}; requests are answered in order.
REST: JSON {"voice_uuid", "data", "sample_rate", "precision"} ->
      {"success": true, "audio_content": <b64 WAV>, "duration", "sample_rate", ...}.
Auth: `Authorization: Bearer <key>`; a bad key gets HTTP 401 (handshake or request).
The first-byte delay applies to every synthesis request (every sentence), since each is a
separate synthesis on Resemble's side.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
from typing import Any

from aiohttp import WSMsgType, web

from .audio import OutputFormat, render_speech, to_wav
from .common import accepted_ws, drop, hang, json_response, read_until_stopped, state_of
from .state import RESEMBLE, FakeState

_UNAUTHORIZED = {"success": False, "message": "Unauthorized: invalid API token"}


def _bearer_ok(request: web.Request, state: FakeState) -> bool:
    header = request.headers.get("Authorization", "")
    return header.startswith("Bearer ") and state.key_ok(header[len("Bearer ") :])


def _count(state: FakeState, text: str) -> None:
    state.add(RESEMBLE, "requests")
    state.add(RESEMBLE, "characters", len(text))
    state.add(RESEMBLE, "characters_nonspace", len("".join(text.split())))


def _timestamps(text: str, duration_s: float) -> dict[str, list[Any]]:
    step = duration_s / max(1, len(text))
    return {
        "graph_chars": list(text),
        "graph_times": [[round(i * step, 3), round((i + 1) * step, 3)] for i in range(len(text))],
        "phon_chars": [],
        "phon_times": [],
    }


async def _delay_first_byte(state: FakeState) -> None:
    if state.script.tts_first_byte_delay_ms:
        await asyncio.sleep(state.script.tts_first_byte_delay_ms / 1000)


async def _answer(ws: web.WebSocketResponse, state: FakeState, req: dict[str, Any]) -> None:
    text = str(req.get("data", ""))
    request_id = req.get("request_id")
    sample_rate = int(req.get("sample_rate") or 44100)
    mp3 = req.get("output_format", "mp3") == "mp3"
    fmt = OutputFormat("mp3" if mp3 else "pcm", sample_rate, 64000)
    audio, duration = await render_speech(text, fmt, state.script.tts_ms_per_char)
    if not mp3 and audio:
        audio = to_wav(audio, sample_rate)
    await _delay_first_byte(state)
    state.add(RESEMBLE, "audio_seconds_out", duration)
    for i in range(0, len(audio), 4096):
        await ws.send_json(
            {
                "type": "audio",
                "audio_content": base64.b64encode(audio[i : i + 4096]).decode(),
                "audio_timestamps": _timestamps(text, duration) if i == 0 else None,
                "sample_rate": sample_rate,
                "request_id": request_id,
            }
        )
    await ws.send_json({"type": "audio_end", "request_id": request_id})


async def _answer_loop(ws: web.WebSocketResponse, state: FakeState, queue: asyncio.Queue[dict[str, Any]]) -> None:
    try:
        while True:
            await _answer(ws, state, await queue.get())
    except (ConnectionError, RuntimeError):
        return  # client went away


async def handle_stream(request: web.Request) -> web.StreamResponse:
    state = state_of(request)
    if not _bearer_ok(request, state):
        state.add(RESEMBLE, "auth_failures")
        return json_response(401, _UNAUTHORIZED)
    failure = state.take_failure(RESEMBLE)
    if failure == "reject":
        return json_response(500, {"success": False, "message": "fake internal error"})

    async with accepted_ws(request) as ws:
        state.add(RESEMBLE, "connections")
        if failure == "hang":
            await read_until_stopped(request, ws)
            state.add(RESEMBLE, "closed")
            return ws
        queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        answers = asyncio.create_task(_answer_loop(ws, state, queue))
        try:
            async for msg in ws:
                if msg.type != WSMsgType.TEXT:
                    continue
                req = json.loads(msg.data)
                if failure == "drop":
                    await drop(ws)
                    break
                _count(state, str(req.get("data", "")))
                state.record(RESEMBLE, {"ws": True, **req})
                queue.put_nowait(req)
        finally:
            answers.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await answers
            state.add(RESEMBLE, "closed")
    return ws


async def handle_synthesize(request: web.Request) -> web.StreamResponse:
    state = state_of(request)
    if not _bearer_ok(request, state):
        state.add(RESEMBLE, "auth_failures")
        return json_response(401, _UNAUTHORIZED)
    failure = state.take_failure(RESEMBLE)
    if failure == "reject":
        return json_response(500, {"success": False, "message": "fake internal error"})
    if failure == "hang":
        await hang(request)
        return json_response(503, {"success": False, "message": "fake shutting down"})
    if failure == "drop":
        if request.transport is not None:
            request.transport.close()
        return web.Response(status=500)

    body = await request.json()
    text = str(body.get("data", ""))
    sample_rate = int(body.get("sample_rate") or 44100)
    _count(state, text)
    state.record(RESEMBLE, {"rest": True, **body})
    pcm, duration = await render_speech(text, OutputFormat("pcm", sample_rate), state.script.tts_ms_per_char)
    await _delay_first_byte(state)
    state.add(RESEMBLE, "audio_seconds_out", duration)
    return json_response(
        200,
        {
            "success": True,
            "audio_content": base64.b64encode(to_wav(pcm, sample_rate)).decode(),
            "audio_timestamps": _timestamps(text, duration),
            "duration": duration,
            "synth_duration": duration,
            "output_sample_rate": sample_rate,
            "sample_rate": sample_rate,
            "issues": [],
        },
    )
