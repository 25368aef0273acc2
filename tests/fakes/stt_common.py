"""Machinery shared by the streaming STT fakes.

A session owns one websocket. Incoming PCM goes through an `EnergyEndpointer`; each detected
utterance is given the next scripted transcript, and the provider subclass turns the
start/ongoing/end events into its own wire messages. Outgoing messages pass through one
ordered queue so a delayed final (`stt_final_delay_ms`) is never overtaken by later messages
and a graceful close waits for everything already scheduled.
"""

from __future__ import annotations

import asyncio
import contextlib
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from .audio import EnergyEndpointer, SpeechEnd, SpeechOngoing, SpeechStart
from .state import FakeState


@dataclass
class Word:
    text: str
    start_s: float
    end_s: float


@dataclass
class Utterance:
    text: str
    start_s: float
    end_s: float | None = None

    def words(self, upto_s: float | None = None) -> list[Word]:
        """The transcript's words spread evenly over the utterance's audio span."""
        tokens = self.text.split()
        end = self.end_s if upto_s is None else upto_s
        end = max(end if end is not None else self.start_s, self.start_s + 0.01 * len(tokens))
        step = (end - self.start_s) / max(1, len(tokens))
        return [
            Word(tok, round(self.start_s + i * step, 3), round(self.start_s + (i + 1) * step, 3))
            for i, tok in enumerate(tokens)
        ]


@dataclass
class _Close:
    code: int
    message: bytes


class SttSession(ABC):
    """One client connection of a streaming STT fake."""

    provider: str

    def __init__(self, ws: web.WebSocketResponse, state: FakeState, sample_rate: int) -> None:
        self.ws = ws
        self.state = state
        self.sample_rate = sample_rate
        script = state.script
        self._endpointer = EnergyEndpointer(
            sample_rate,
            threshold=script.stt_energy_threshold,
            min_speech_ms=script.stt_min_speech_ms,
            end_silence_ms=script.stt_end_silence_ms,
            interim_after_ms=script.stt_interim_after_ms,
        )
        self.utterance: Utterance | None = None
        self.audio_bytes = 0
        self._loop = asyncio.get_running_loop()
        self._queue: asyncio.Queue[tuple[float, dict[str, Any] | _Close]] = asyncio.Queue()
        self._writer = asyncio.create_task(self._write_loop())
        state.add(self.provider, "connections")

    @property
    def final_delay_s(self) -> float:
        """Read live, so a script update mid-call applies to the next final."""
        return self.state.script.stt_final_delay_ms / 1000

    @property
    def audio_seconds(self) -> float:
        return self.audio_bytes / (self.sample_rate * 2)

    # --- input -----------------------------------------------------------------------------
    def feed_audio(self, pcm: bytes) -> None:
        """Count the PCM exactly as received, then run endpointing on it."""
        self.audio_bytes += len(pcm)
        self.state.add_audio(self.provider, len(pcm), self.sample_rate)
        for ev in self._endpointer.push(pcm):
            if isinstance(ev, SpeechStart):
                self.utterance = Utterance(self.state.next_transcript(), ev.start_s)
                self.state.add(self.provider, "utterances")
                self.on_speech_start(self.utterance)
            elif isinstance(ev, SpeechOngoing) and self.utterance is not None:
                self.on_speech_ongoing(self.utterance, ev.now_s)
            elif isinstance(ev, SpeechEnd):
                self._end_utterance(ev)

    def force_endpoint(self) -> Utterance | None:
        """Finalize the utterance in progress (Finalize/ForceEndpoint/commit/close)."""
        ev = self._endpointer.force_end()
        if ev is None:
            return None
        return self._end_utterance(ev, forced=True)

    def _end_utterance(self, ev: SpeechEnd, *, forced: bool = False) -> Utterance | None:
        utt = self.utterance
        self.utterance = None
        if utt is None:
            return None
        utt.end_s = ev.end_s
        self.on_speech_end(utt, forced=forced)
        return utt

    # --- provider hooks --------------------------------------------------------------------
    @abstractmethod
    def on_speech_start(self, utt: Utterance) -> None: ...

    @abstractmethod
    def on_speech_ongoing(self, utt: Utterance, now_s: float) -> None: ...

    @abstractmethod
    def on_speech_end(self, utt: Utterance, *, forced: bool) -> None: ...

    # --- output ----------------------------------------------------------------------------
    def send(self, msg: dict[str, Any], *, delay_s: float = 0.0) -> None:
        self._queue.put_nowait((self._loop.time() + delay_s, msg))

    def send_final(self, msg: dict[str, Any]) -> None:
        """Queue a final transcript after the scripted `stt_final_delay_ms`."""
        self.state.add(self.provider, "final_transcripts")
        self.send(msg, delay_s=self.final_delay_s)

    def close_when_drained(self, code: int = 1000, message: bytes = b"") -> None:
        self._queue.put_nowait((self._loop.time(), _Close(code, message)))

    async def finish(self) -> None:
        """Called once the client side is gone: stop writing and count the close."""
        self._writer.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._writer
        self.state.add(self.provider, "closed")

    async def _write_loop(self) -> None:
        while True:
            due, item = await self._queue.get()
            wait = due - self._loop.time()
            if wait > 0:
                await asyncio.sleep(wait)
            if self.ws.closed:
                return
            try:
                if isinstance(item, _Close):
                    await self.ws.close(code=item.code, message=item.message)
                    return
                await self.ws.send_json(item)
            except (ConnectionError, RuntimeError):
                return  # client went away; nothing left to deliver
