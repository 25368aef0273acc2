"""Fake Deepgram live transcription: websocket `GET /v1/listen` (nova-3 protocol).

Wire protocol as used by livekit-plugins-deepgram 1.8.9 (`deepgram/stt.py`):
  client -> binary PCM linear16 frames, text {"type": "KeepAlive" | "Finalize" | "CloseStream"}
  server -> {"type": "SpeechStarted"} (vad_events=true), {"type": "Results", is_final,
            speech_final, channel.alternatives[0].{transcript, confidence, words}, metadata},
            {"type": "UtteranceEnd"} (utterance_end_ms set), and on CloseStream a final
            {"type": "Metadata"} before the server closes the socket (the plugin relies on
            that close to finish its receive loop).
Auth: `Authorization: Token <key>`; a bad key gets HTTP 401 at the handshake, as Deepgram does.
"""

from __future__ import annotations

import json
import string
import uuid
from datetime import UTC, datetime
from typing import Any

from aiohttp import WSMsgType, web

from .common import accepted_ws, drop, json_response, read_until_stopped, state_of
from .state import DEEPGRAM, FakeState
from .stt_common import SttSession, Utterance, Word


class DeepgramSession(SttSession):
    provider = DEEPGRAM

    def __init__(self, ws: web.WebSocketResponse, state: FakeState, sample_rate: int, query: dict[str, str]) -> None:
        super().__init__(ws, state, sample_rate)
        self.request_id = str(uuid.uuid4())
        self.interim_results = query.get("interim_results", "false") == "true"
        self.vad_events = query.get("vad_events", "false") == "true"
        self.utterance_end = "utterance_end_ms" in query
        self.model = query.get("model", "nova-3")

    def on_speech_start(self, utt: Utterance) -> None:
        if self.vad_events:
            self.send({"type": "SpeechStarted", "channel": [0], "timestamp": utt.start_s})

    def on_speech_ongoing(self, utt: Utterance, now_s: float) -> None:
        if self.interim_results:
            words = utt.words(upto_s=now_s)
            self.send(self._results(utt, words[: max(1, len(words) // 2)], False, False))

    def on_speech_end(self, utt: Utterance, *, forced: bool) -> None:
        words = utt.words()
        if self.interim_results:
            self.send(self._results(utt, words, False, False))
        # Finalize/CloseStream flushes produce is_final without an endpoint (speech_final).
        self.send_final(self._results(utt, words, True, not forced, from_finalize=forced))
        if self.utterance_end and not forced:
            last_end = words[-1].end_s if words else utt.end_s
            self.send(
                {"type": "UtteranceEnd", "channel": [0, 1], "last_word_end": last_end},
                delay_s=self.final_delay_s,
            )

    def finalize(self) -> None:
        if self.force_endpoint() is None:
            # Deepgram answers a Finalize with nothing pending with an empty final result.
            empty = Utterance("", self.audio_seconds, self.audio_seconds)
            self.send(self._results(empty, [], True, False, from_finalize=True))

    def close_stream(self) -> None:
        self.force_endpoint()
        self.send(
            {
                "type": "Metadata",
                "transaction_key": "deprecated",
                "request_id": self.request_id,
                "sha256": "",
                "created": datetime.now(UTC).isoformat(),
                "duration": self.audio_seconds,
                "channels": 1,
                "models": [self.model],
                "model_info": {},
            }
        )
        self.close_when_drained(1000)

    def _results(
        self,
        utt: Utterance,
        words: list[Word],
        is_final: bool,
        speech_final: bool,
        *,
        from_finalize: bool = False,
    ) -> dict[str, Any]:
        end = words[-1].end_s if words else (utt.end_s or utt.start_s)
        return {
            "type": "Results",
            "channel_index": [0, 1],
            "duration": round(end - utt.start_s, 3),
            "start": round(utt.start_s, 3),
            "is_final": is_final,
            "speech_final": speech_final,
            "from_finalize": from_finalize,
            "channel": {
                "alternatives": [
                    {
                        "transcript": " ".join(w.text for w in words),
                        "confidence": 0.99,
                        "words": [
                            {
                                "word": w.text.strip(string.punctuation).lower(),
                                "start": w.start_s,
                                "end": w.end_s,
                                "confidence": 0.99,
                                "punctuated_word": w.text,
                            }
                            for w in words
                        ],
                    }
                ]
            },
            "metadata": {
                "request_id": self.request_id,
                "model_info": {"name": f"general-{self.model}", "version": "fake", "arch": "fake"},
                "model_uuid": "00000000-0000-0000-0000-000000000000",
            },
        }


async def handle_listen(request: web.Request) -> web.StreamResponse:
    state = state_of(request)
    if not state.key_ok(_token(request.headers.get("Authorization"))):
        state.add(DEEPGRAM, "auth_failures")
        return json_response(
            401,
            {"err_code": "INVALID_AUTH", "err_msg": "Invalid credentials.", "request_id": "fake"},
            headers={"dg-error": "Invalid credentials."},
        )
    failure = state.take_failure(DEEPGRAM)
    if failure == "reject":
        return json_response(500, {"err_code": "INTERNAL_SERVER_ERROR", "err_msg": "fake"})
    query = dict(request.query)
    if query.get("encoding", "linear16") != "linear16" or query.get("channels", "1") != "1":
        return json_response(400, {"err_code": "Bad Request", "err_msg": "fake: linear16 mono only"})
    sample_rate = int(query.get("sample_rate", "16000"))
    state.record(DEEPGRAM, {"query": query})

    async with accepted_ws(request) as ws:
        if failure == "hang":
            state.add(DEEPGRAM, "connections")
            await read_until_stopped(request, ws)
            state.add(DEEPGRAM, "closed")
            return ws
        session = DeepgramSession(ws, state, sample_rate, query)
        try:
            async for msg in ws:
                if msg.type == WSMsgType.BINARY:
                    if failure == "drop" or (failure is None and state.take_live_drop(DEEPGRAM)):
                        await drop(ws)
                        break
                    state.add(DEEPGRAM, "audio_messages")
                    session.feed_audio(msg.data)
                elif msg.type == WSMsgType.TEXT:
                    kind = json.loads(msg.data).get("type")
                    if kind == "Finalize":
                        session.finalize()
                    elif kind == "CloseStream":
                        session.close_stream()
                    # KeepAlive needs no answer.
        finally:
            await session.finish()
    return ws


def _token(header: str | None) -> str | None:
    if header is None or not header.startswith("Token "):
        return None
    return header[len("Token ") :]
