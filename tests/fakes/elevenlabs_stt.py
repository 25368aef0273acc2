"""Fake ElevenLabs Scribe v2 realtime STT: websocket `GET /v1/speech-to-text/realtime`.

Wire protocol as used by livekit-plugins-elevenlabs 1.8.9 (`elevenlabs/stt.py`, model
"scribe_v2_realtime"; the default "scribe_v1" is batch-only and not faked here):
  client -> {"message_type": "input_audio_chunk", "audio_base_64", "commit", "sample_rate"};
            an empty chunk every 10 s is a keepalive; commit=true ends a segment (manual mode).
  server -> {"message_type": "session_started"}, "partial_transcript" {text}, and every commit
            twice: "committed_transcript" {text} then "committed_transcript_with_timestamps"
            {text, words, language_code} (the second copy only when include_timestamps or
            include_language_detection was requested; the plugin reads that copy then).
commit_strategy=vad: the fake commits on its own energy end-of-speech. commit_strategy=manual:
the fake only sends partials until the client commits; a commit with no speech since the last
one yields an empty committed transcript (the plugin's END_OF_SPEECH signal).
Auth: `xi-api-key`; a bad key gets an `auth_error` message then close 1008 (non-retryable in
the plugin, so the call fails fast).
"""

from __future__ import annotations

import base64
import json
import uuid
from typing import Any

from aiohttp import WSMsgType, web

from .common import accepted_ws, drop, json_response, read_until_stopped, state_of
from .state import ELEVENLABS_STT, FakeState
from .stt_common import SttSession, Utterance


class ScribeSession(SttSession):
    provider = ELEVENLABS_STT

    def __init__(self, ws: web.WebSocketResponse, state: FakeState, sample_rate: int, query: dict[str, str]) -> None:
        super().__init__(ws, state, sample_rate)
        self.vad_commits = query.get("commit_strategy", "manual") == "vad"
        self.with_timestamps = query.get("include_timestamps") == "true"
        self.language_detection = query.get("include_language_detection") == "true"
        self.language = query.get("language_code", "en")
        self._uncommitted: list[Utterance] = []
        self.send(
            {
                "message_type": "session_started",
                "session_id": uuid.uuid4().hex,
                "config": {
                    "sample_rate": sample_rate,
                    "audio_format": query.get("audio_format"),
                    "model_id": query.get("model_id"),
                    "commit_strategy": query.get("commit_strategy", "manual"),
                },
            }
        )

    def on_speech_start(self, utt: Utterance) -> None:
        pass  # Scribe has no speech-started event; the first partial plays that role.

    def on_speech_ongoing(self, utt: Utterance, now_s: float) -> None:
        words = utt.text.split()
        self.send(
            {
                "message_type": "partial_transcript",
                "text": " ".join(words[: max(1, len(words) // 2)]),
            }
        )

    def on_speech_end(self, utt: Utterance, *, forced: bool) -> None:
        self.send({"message_type": "partial_transcript", "text": utt.text})
        self._uncommitted.append(utt)
        if self.vad_commits and not forced:
            self._commit()

    def client_commit(self) -> None:
        self.force_endpoint()
        self._commit()

    def _commit(self) -> None:
        utts, self._uncommitted = self._uncommitted, []
        text = " ".join(u.text for u in utts)
        plain = {"message_type": "committed_transcript", "text": text}
        if text:
            self.send_final(plain)
        else:
            self.send(plain, delay_s=self.final_delay_s)
        if self.with_timestamps or self.language_detection:
            self.send(self._with_timestamps(text, utts), delay_s=self.final_delay_s)

    def _with_timestamps(self, text: str, utts: list[Utterance]) -> dict[str, Any]:
        words: list[dict[str, Any]] = []
        for utt in utts:
            for w in utt.words():
                if words:
                    prev_end = words[-1]["end"]
                    words.append({"text": " ", "start": prev_end, "end": w.start_s, "type": "spacing"})
                words.append(
                    {
                        "text": w.text,
                        "start": w.start_s,
                        "end": w.end_s,
                        "type": "word",
                        "logprob": -0.01,
                    }
                )
        return {
            "message_type": "committed_transcript_with_timestamps",
            "text": text,
            "language_code": self.language,
            "words": words,
        }


async def handle_realtime(request: web.Request) -> web.StreamResponse:
    state = state_of(request)
    query = dict(request.query)
    key_ok = state.key_ok(request.headers.get("xi-api-key"))
    failure = state.take_failure(ELEVENLABS_STT) if key_ok else None
    if failure == "reject":
        return json_response(500, {"detail": {"status": "internal_error", "message": "fake"}})
    audio_format = query.get("audio_format", "pcm_16000")
    if not audio_format.startswith("pcm_"):
        return json_response(400, {"detail": {"status": "invalid_format", "message": "fake: pcm only"}})
    state.record(ELEVENLABS_STT, {"query": query})

    async with accepted_ws(request) as ws:
        if not key_ok:
            state.add(ELEVENLABS_STT, "auth_failures")
            await ws.send_json({"message_type": "auth_error", "error": "Invalid API key"})
            await ws.close(code=1008, message=b"Invalid API key")
            return ws
        if failure == "hang":
            state.add(ELEVENLABS_STT, "connections")
            await read_until_stopped(request, ws)
            state.add(ELEVENLABS_STT, "closed")
            return ws
        session = ScribeSession(ws, state, int(audio_format.split("_")[1]), query)
        try:
            async for msg in ws:
                if msg.type != WSMsgType.TEXT:
                    continue
                data = json.loads(msg.data)
                if data.get("message_type") != "input_audio_chunk":
                    state.record(ELEVENLABS_STT, {"message": data})
                    continue
                audio = base64.b64decode(data.get("audio_base_64") or "")
                if audio and failure == "drop":
                    await drop(ws)
                    break
                if audio:
                    session.feed_audio(audio)
                if data.get("commit"):
                    session.client_commit()
        finally:
            await session.finish()
    return ws
