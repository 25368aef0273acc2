"""Shared, mutable state of the fake providers: the script, failure switches and counters.

Every provider handler reads the script and writes counters through one `FakeState`, so a
test (in process) or a harness (over `POST /_fake/script`) can steer all fakes from one place.
Everything runs on the server's event loop, so no locking is needed.
"""

from __future__ import annotations

import copy
import json
from collections import deque
from dataclasses import dataclass, field, fields
from typing import Any, Literal

# Provider keys used in counters, failure switches and the request log.
DEEPGRAM = "deepgram"
ASSEMBLYAI = "assemblyai"
ELEVENLABS_STT = "elevenlabs_stt"
ELEVENLABS_TTS = "elevenlabs_tts"
GEMINI = "gemini"
RESEMBLE = "resemble"
OPENAI = "openai"
GOOGLE_TTS = "google_tts"
PROVIDERS = (DEEPGRAM, ASSEMBLYAI, ELEVENLABS_STT, ELEVENLABS_TTS, GEMINI, RESEMBLE, OPENAI, GOOGLE_TTS)

FailureMode = Literal["reject", "drop", "hang"]
FAILURE_MODES: tuple[str, ...] = ("reject", "drop", "hang")

# A scripted LLM reply: plain text, {"text": ...}, {"json": <any>} or
# {"function_call": {"name": ..., "args": {...}}}.
LlmReply = str | dict[str, Any]


@dataclass
class FakeScript:
    """What the fakes answer and how slowly. All fields can be set from JSON."""

    # STT: one transcript is consumed per detected utterance; then the default (or cycle).
    stt_transcripts: list[str] = field(default_factory=list)
    stt_default_transcript: str = "hello there"
    stt_cycle: bool = False
    stt_final_delay_ms: int = 0
    # Energy endpointing: RMS (int16 scale) above which a 10 ms frame counts as speech.
    stt_energy_threshold: float = 500.0
    stt_min_speech_ms: int = 50
    stt_end_silence_ms: int = 300
    # An interim result is sent once an utterance has been voiced this long.
    stt_interim_after_ms: int = 300

    # LLM: replies consumed in order, then the default.
    llm_replies: list[LlmReply] = field(default_factory=list)
    llm_default_reply: str = "This is a scripted reply."
    # Structured-output requests (responseMimeType json / responseSchema) use this queue;
    # a str is sent verbatim (so it may be invalid JSON), anything else is json.dumps'ed.
    llm_json_replies: list[Any] = field(default_factory=list)
    llm_default_json: Any = field(default_factory=dict)
    # Function calling (Gemini): a request that declares tools gets the next of these as a functionCall
    # ({"name", "args"}; the name must be one it declared), unless its last turn already holds function
    # responses: then it is answered with text (the next llm_replies item, else a sentence quoting the responses).
    llm_tool_calls: list[dict[str, Any]] = field(default_factory=list)
    llm_first_token_delay_ms: int = 0
    # Gemini: a plain text request is answered "You said: <its last user message>" (before any llm_replies), so a
    # reply shows which transcript it was generated from (the bench's stale-transcript check).
    llm_echo: bool = False
    llm_chunk_delay_ms: int = 5
    llm_chunks: int = 3

    # TTS
    tts_first_byte_delay_ms: int = 0
    tts_ms_per_char: float = 60.0

    # provider -> {"mode": reject|drop|hang, "times": N or None (forever)}
    failures: dict[str, dict[str, Any]] = field(default_factory=dict)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> FakeScript:
        script = cls()
        script.update(data)
        return script

    def update(self, data: dict[str, Any]) -> None:
        """Replace the given fields; unknown keys raise so typos in scripts fail loudly."""
        known = {f.name for f in fields(self)}
        unknown = set(data) - known
        if unknown:
            raise ValueError(f"unknown script keys: {sorted(unknown)}")
        for key, value in data.items():
            if key == "failures":
                value = {p: _normalize_failure(p, v) for p, v in value.items()}
            setattr(self, key, copy.deepcopy(value))

    def to_dict(self) -> dict[str, Any]:
        return {f.name: copy.deepcopy(getattr(self, f.name)) for f in fields(self)}


def _normalize_failure(provider: str, value: Any) -> dict[str, Any]:
    if provider not in PROVIDERS:
        raise ValueError(f"unknown provider {provider!r}; expected one of {PROVIDERS}")
    spec = {"mode": value, "times": None} if isinstance(value, str) else dict(value)
    if spec.get("mode") not in FAILURE_MODES:
        raise ValueError(f"failure mode must be one of {FAILURE_MODES}, got {spec.get('mode')!r}")
    spec.setdefault("times", None)
    return spec


def _zero_counters() -> dict[str, dict[str, int | float]]:
    stt = {
        "connections": 0,
        "closed": 0,
        "auth_failures": 0,
        "injected_failures": 0,
        "audio_bytes": 0,
        "audio_messages": 0,  # binary websocket messages (the Deepgram fake)
        "audio_seconds": 0.0,
        "utterances": 0,
        "final_transcripts": 0,
    }
    tts = {
        "connections": 0,
        "closed": 0,
        "auth_failures": 0,
        "injected_failures": 0,
        "requests": 0,
        "characters": 0,
        "characters_nonspace": 0,
        "audio_seconds_out": 0.0,
    }
    llm = {
        "auth_failures": 0,
        "injected_failures": 0,
        "requests": 0,
        "completed": 0,
        "json_requests": 0,
        "tool_requests": 0,
        "amd_requests": 0,
        "function_calls": 0,
        "prompt_tokens": 0,
        "completion_tokens": 0,
        "total_tokens": 0,
        "model_list_requests": 0,
    }
    return {
        DEEPGRAM: dict(stt),
        ASSEMBLYAI: dict(stt),
        ELEVENLABS_STT: dict(stt),
        ELEVENLABS_TTS: dict(tts),
        GEMINI: dict(llm),
        RESEMBLE: dict(tts),
        OPENAI: dict(llm),
        GOOGLE_TTS: dict(tts),
    }


class FakeState:
    """Script + counters + request log shared by every provider handler."""

    def __init__(self, script: FakeScript | None = None, *, api_key: str = "fake-key") -> None:
        self.api_key = api_key
        self.script = script or FakeScript()
        self._counters = _zero_counters()
        # provider -> sample rate -> PCM bytes; audio_seconds is derived from this so it is
        # exactly bytes / (rate * 2) rather than a running float sum.
        self._audio_bytes: dict[str, dict[int, int]] = {}
        self._stt_index = 0
        # Recent requests per provider (bounded), for tests that inspect what was sent.
        self.log: dict[str, deque[dict[str, Any]]] = {p: deque(maxlen=200) for p in PROVIDERS}

    # --- counters -----------------------------------------------------------------------
    def add(self, provider: str, name: str, amount: int | float = 1) -> None:
        self._counters[provider][name] += amount

    def add_audio(self, provider: str, nbytes: int, sample_rate: int) -> None:
        """Count received PCM s16le mono bytes (the STT `audio_bytes`/`audio_seconds`)."""
        self._counters[provider]["audio_bytes"] += nbytes
        by_rate = self._audio_bytes.setdefault(provider, {})
        by_rate[sample_rate] = by_rate.get(sample_rate, 0) + nbytes

    def counters(self) -> dict[str, dict[str, int | float]]:
        """A deep copy, safe to compare against later snapshots."""
        snapshot = copy.deepcopy(self._counters)
        for provider, by_rate in self._audio_bytes.items():
            snapshot[provider]["audio_seconds"] = sum(n / (sr * 2) for sr, n in by_rate.items())
        for values in snapshot.values():
            if "audio_seconds_out" in values:
                values["audio_seconds_out"] = round(values["audio_seconds_out"], 6)
        return snapshot

    def reset_counters(self) -> None:
        self._counters = _zero_counters()
        self._audio_bytes = {}
        for entries in self.log.values():
            entries.clear()

    def record(self, provider: str, entry: dict[str, Any]) -> None:
        self.log[provider].append(entry)

    # --- auth and failures ----------------------------------------------------------------
    def key_ok(self, provided: str | None) -> bool:
        return provided is not None and provided == self.api_key

    def take_failure(self, provider: str) -> FailureMode | None:
        """The failure to inject for this request, consuming one use of a limited switch."""
        spec = self.script.failures.get(provider)
        if spec is None:
            return None
        times = spec.get("times")
        if times is not None:
            if times <= 0:
                return None
            spec["times"] = times - 1
        self.add(provider, "injected_failures")
        mode: FailureMode = spec["mode"]
        return mode

    def take_live_drop(self, provider: str) -> bool:
        """A 'drop' switch set while a socket is already open kills that socket too, at its next audio message:
        a provider falling over mid-call, not only at connect."""
        spec = self.script.failures.get(provider)
        return spec is not None and spec["mode"] == "drop" and self.take_failure(provider) == "drop"

    # --- scripted content -------------------------------------------------------------------
    def next_transcript(self) -> str:
        s = self.script
        if s.stt_cycle and s.stt_transcripts:
            text = s.stt_transcripts[self._stt_index % len(s.stt_transcripts)]
            self._stt_index += 1
            return text
        if s.stt_transcripts:
            return s.stt_transcripts.pop(0)
        return s.stt_default_transcript

    def next_llm_reply(self, *, json_mode: bool) -> LlmReply:
        s = self.script
        if json_mode:
            value = s.llm_json_replies.pop(0) if s.llm_json_replies else s.llm_default_json
            return {"text": value if isinstance(value, str) else json.dumps(value)}
        return s.llm_replies.pop(0) if s.llm_replies else s.llm_default_reply
