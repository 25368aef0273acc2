"""Where a turn's time goes: monotonic marks of each reply, taken inside the job process by the agent's pipeline
nodes (pipelines/builder.py `VoiceAgent`), from the caller's last loud frame at the STT tap to the agent's first
frame published to the room:

    last loud input frame -> STT final received -> end of turn decided -> LLM request sent -> LLM first token
    -> first text to TTS -> first TTS audio -> first agent frame published

LiveKit starts the LLM (preemptive generation) on the STT final, before the turn is committed, so the marks do not
always come in that order. A reply's `hops` are its marks in the order they happened, each with its offset from the
last loud frame (`at`) and the time since the mark before it (`seconds`): the `seconds` add up to `voice_to_voice`
exactly. LiveKit's own `e2e_latency` starts later (at its end-of-speech event, after the VAD's silence) and so
reads lower than what the caller waits."""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from typing import Any

import numpy as np

# An input frame above this level is the caller speaking (espeak speech sits near -20 dBFS, Opus-decoded
# silence far below -70).
LOUD_DBFS = -50.0
# the same level as a mean square of int16 samples
_LOUD_POWER = (32768.0 * 10 ** (LOUD_DBFS / 20)) ** 2

MARKS = ("stt_final", "end_of_turn", "llm_request", "llm_first_token", "tts_first_text", "tts_first_audio", "published")
# Marks of the reply being generated, which may come before the turn is committed.
_GENERATION = ("llm_request", "llm_first_token", "tts_first_text", "tts_first_audio")


def frame_dbfs(pcm: bytes | memoryview) -> float:
    samples = np.frombuffer(pcm, dtype=np.int16)
    if samples.size == 0:
        return -120.0
    rms = math.sqrt(float(np.mean(np.square(samples, dtype=np.float64))))
    return -120.0 if rms <= 0 else 20.0 * math.log10(rms / 32768.0)


class TurnClock:
    def __init__(self, now: Callable[[], float] = time.monotonic) -> None:
        self.now = now
        self._last_loud: float | None = None
        self._last_final: float | None = None
        self._marks: dict[str, float] = {}  # the reply under way (its generation may start before the turn ends)
        self._committed = False
        self._done: dict[str, float] | None = None
        # LLM requests since the last reply went out: more than one when a preemptive generation was discarded
        self._requests = 0
        self._done_requests = 0

    # --- the caller's side, always listening
    def input_frame(self, pcm: bytes | memoryview, sample_rate: int = 16_000) -> None:
        """A frame of the caller's audio, just arrived (RoomIO hands them over in frames of 50 ms or more): when
        it is loud, the caller's speech ended where its last loud 10 ms ends, that much before now."""
        samples = np.frombuffer(pcm, dtype=np.int16)
        step = max(1, sample_rate // 100)
        if samples.size <= step:
            if frame_dbfs(pcm) > LOUD_DBFS:
                self._last_loud = self.now()
            return
        chunks = samples.size // step
        levels = np.square(samples[: chunks * step].reshape(chunks, step), dtype=np.float64).mean(axis=1)
        loud = np.flatnonzero(levels > _LOUD_POWER)
        if loud.size:
            after = samples.size - (int(loud[-1]) + 1) * step  # samples after the last loud 10 ms
            self._last_loud = self.now() - after / sample_rate

    def stt_final(self) -> None:
        """A final transcript. A generation begun before the caller's latest speech is stale: LiveKit starts
        another one for what they have said since (a late final of the same speech leaves the reply's marks)."""
        self._last_final = self.now()
        loud = self._last_loud
        if loud is not None:
            self._marks = {k: v for k, v in self._marks.items() if k not in _GENERATION or v > loud}

    # --- one reply
    def end_of_turn(self) -> None:
        """The turn is committed: the reply it gets is timed from the caller's last loud frame before now."""
        marks = {k: v for k, v in self._marks.items() if k in _GENERATION}
        marks["end_of_turn"] = self.now()
        if self._last_loud is not None:
            marks["last_loud"] = self._last_loud
        if self._last_final is not None:
            marks["stt_final"] = self._last_final
        self._marks, self._committed, self._done = marks, True, None

    def llm_request(self) -> None:
        """An LLM request starts (a preemptive one too): counted for the reply that goes out next."""
        self._requests += 1
        self.mark("llm_request")

    def mark(self, name: str) -> None:
        """The first time the reply under way reaches `name`; later calls (another LLM step, more text) change
        nothing. A reply published with no committed turn (the greeting, an apology) is not a turn."""
        if name in self._marks:
            return
        self._marks[name] = self.now()
        if name == "published":
            if self._committed:
                self._done, self._done_requests = self._marks, self._requests
            self._marks, self._committed, self._requests = {}, False, 0

    def take(self) -> dict[str, Any]:
        """The last published reply's figures, once: `voice_to_voice` (seconds), its `hops` and `llm_requests` (the
        LLM requests made for it: 1, or more when preemptive generations were started and discarded)."""
        marks, self._done = self._done, None
        if marks is None or "last_loud" not in marks:
            return {}
        t0 = marks["last_loud"]
        hops, prev = [], t0
        for name in sorted((m for m in MARKS if m in marks), key=lambda m: marks[m]):
            hops.append({"mark": name, "at": round(marks[name] - t0, 4), "seconds": round(marks[name] - prev, 4)})
            prev = marks[name]
        return {
            "voice_to_voice": round(marks["published"] - t0, 4),
            "hops": hops,
            "llm_requests": self._done_requests,
        }
