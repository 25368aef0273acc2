"""Fake AssemblyAI Universal Streaming v3: websocket `GET /v3/ws`.

Wire protocol as used by livekit-plugins-assemblyai 1.8.9 (`assemblyai/stt.py`):
  server -> {"type": "Begin", id, expires_at} first, then {"type": "SpeechStarted", timestamp},
            {"type": "Turn", turn_order, end_of_turn, turn_is_formatted, transcript, utterance,
            words[{text, start, end (ms), confidence, word_is_final}], end_of_turn_confidence,
            language_code}, and {"type": "Termination", ...} before closing after a Terminate.
  client -> binary PCM s16le, text {"type": "Terminate" | "ForceEndpoint" | "UpdateConfiguration"}.
Auth: raw `Authorization: <key>` header. AssemblyAI v3 accepts the upgrade and then closes with
1008 "Unauthorized Connection: ..." (preceded by an Error frame), so the fake does the same.
Note that the plugin treats close code 1008 as retryable (it is not an HTTP 4xx).
"""

from __future__ import annotations

import json
import string
import time
import uuid
from typing import Any

from aiohttp import WSMsgType, web

from .common import accepted_ws, drop, json_response, read_until_stopped, state_of
from .state import ASSEMBLYAI, FakeState
from .stt_common import SttSession, Utterance, Word

# Models whose turns are always formatted (mirrors the plugin's _U3_PRO_MODELS).
_U3_PRO = ("u3-rt-pro", "u3-rt-pro-beta-1", "universal-3-5-pro", "universal-3-6-pro")


class AssemblyAISession(SttSession):
    provider = ASSEMBLYAI

    def __init__(self, ws: web.WebSocketResponse, state: FakeState, sample_rate: int, query: dict[str, str]) -> None:
        super().__init__(ws, state, sample_rate)
        self.format_turns = query.get("format_turns") == "true"
        self.always_formatted = query.get("speech_model", "") in _U3_PRO
        self.turn_order = 0
        self.started_at = time.monotonic()
        self.send({"type": "Begin", "id": str(uuid.uuid4()), "expires_at": int(time.time()) + 10800})

    def on_speech_start(self, utt: Utterance) -> None:
        self.send({"type": "SpeechStarted", "timestamp": int(utt.start_s * 1000), "confidence": 0.9})

    def on_speech_ongoing(self, utt: Utterance, now_s: float) -> None:
        words = utt.words(upto_s=now_s)
        self.send(self._turn(words[: max(1, len(words) // 2)], end_of_turn=False, formatted=False))

    def on_speech_end(self, utt: Utterance, *, forced: bool) -> None:
        words = utt.words()
        if self.format_turns:
            # v3 with format_turns: an unformatted end-of-turn first, then the formatted one.
            self.send(self._turn(words, end_of_turn=True, formatted=False, raw=True))
        self.send_final(self._turn(words, end_of_turn=True, formatted=self.format_turns or self.always_formatted))
        self.turn_order += 1

    def terminate(self) -> None:
        self.force_endpoint()
        self.send(
            {
                "type": "Termination",
                "audio_duration_seconds": round(self.audio_seconds, 3),
                "session_duration_seconds": round(time.monotonic() - self.started_at, 3),
            }
        )
        self.close_when_drained(1000)

    def _turn(self, words: list[Word], *, end_of_turn: bool, formatted: bool, raw: bool = False) -> dict[str, Any]:
        def shown(text: str) -> str:
            return text.strip(string.punctuation).lower() if raw else text

        return {
            "type": "Turn",
            "turn_order": self.turn_order,
            "turn_is_formatted": formatted,
            "end_of_turn": end_of_turn,
            # transcript carries only finalized words; partial turns keep them in `words`.
            "transcript": " ".join(shown(w.text) for w in words) if end_of_turn else "",
            "utterance": "",
            "end_of_turn_confidence": 1.0 if end_of_turn else 0.1,
            "language_code": "en",
            "words": [
                {
                    "text": shown(w.text),
                    "start": int(w.start_s * 1000),
                    "end": int(w.end_s * 1000),
                    "confidence": 0.95,
                    "word_is_final": end_of_turn,
                }
                for w in words
            ],
        }


async def handle_ws(request: web.Request) -> web.StreamResponse:
    state = state_of(request)
    query = dict(request.query)
    auth = request.headers.get("Authorization")
    failure = None if not state.key_ok(auth) else state.take_failure(ASSEMBLYAI)
    if failure == "reject":
        return json_response(500, {"error": "fake internal error"})
    if query.get("encoding", "pcm_s16le") != "pcm_s16le":
        return json_response(400, {"error": "fake: only pcm_s16le is supported"})
    sample_rate = int(query.get("sample_rate", "16000"))
    state.record(ASSEMBLYAI, {"query": query})

    async with accepted_ws(request) as ws:
        if not state.key_ok(auth):
            state.add(ASSEMBLYAI, "auth_failures")
            reason = "Missing Authorization header" if auth is None else "Invalid API key"
            await ws.send_json({"type": "Error", "error_code": 1008, "error": reason})
            await ws.close(code=1008, message=f"Unauthorized Connection: {reason}".encode())
            return ws
        if failure == "hang":
            state.add(ASSEMBLYAI, "connections")
            await read_until_stopped(request, ws)
            state.add(ASSEMBLYAI, "closed")
            return ws
        session = AssemblyAISession(ws, state, sample_rate, query)
        try:
            async for msg in ws:
                if msg.type == WSMsgType.BINARY:
                    if failure == "drop" or (failure is None and state.take_live_drop(ASSEMBLYAI)):
                        await drop(ws)
                        break
                    session.feed_audio(msg.data)
                elif msg.type == WSMsgType.TEXT:
                    data = json.loads(msg.data)
                    kind = data.get("type")
                    if kind == "Terminate":
                        session.terminate()
                    elif kind == "ForceEndpoint":
                        session.force_endpoint()
                    else:
                        state.record(ASSEMBLYAI, {"message": data})
        finally:
            await session.finish()
    return ws
