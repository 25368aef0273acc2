"""Audio helpers for the fakes: a speech-like test signal, WAV/MP3 encoding and an energy
endpointer that stands in for real ASR's voice activity detection."""

from __future__ import annotations

import asyncio
import functools
import io
import wave
from dataclasses import dataclass

import av
import numpy as np


def voice_like_pcm(duration_s: float, sample_rate: int, *, amplitude: float = 0.3) -> bytes:
    """Mono s16le: a 180 Hz tone with harmonics under a ~4 Hz syllable-like envelope.

    Deterministic (no noise) so encoded sizes and durations are reproducible in tests.
    """
    n = max(0, round(duration_s * sample_rate))
    t = np.arange(n, dtype=np.float64) / sample_rate
    tone = (np.sin(2 * np.pi * 180 * t) + 0.5 * np.sin(2 * np.pi * 360 * t) + 0.25 * np.sin(2 * np.pi * 540 * t)) / 1.75
    # Never fully silent inside a word, so an energy endpointer sees one continuous segment.
    envelope = 0.6 + 0.4 * np.sin(2 * np.pi * 4 * t) ** 2
    samples = (tone * envelope * amplitude * 32767).astype("<i2")
    return samples.tobytes()


def tts_duration_s(text: str, ms_per_char: float) -> float:
    """Length of the fake speech for `text`: proportional to its non-blank characters."""
    chars = len("".join(text.split()))
    return 0.0 if chars == 0 else max(0.1, chars * ms_per_char / 1000.0)


def to_wav(pcm: bytes, sample_rate: int) -> bytes:
    buf = io.BytesIO()
    with wave.open(buf, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(sample_rate)
        w.writeframes(pcm)
    return buf.getvalue()


@functools.lru_cache(maxsize=256)
def mp3_voice(duration_s: float, sample_rate: int, bitrate: int = 64000) -> bytes:
    """Real MP3 frames (no ID3/Xing header, so several clips concatenate into one valid
    stream, which is how the Resemble plugin feeds its decoder)."""
    pcm = np.frombuffer(voice_like_pcm(duration_s, sample_rate), dtype="<i2")
    ctx = av.CodecContext.create("libmp3lame", "w")
    ctx.sample_rate = sample_rate
    ctx.layout = "mono"
    ctx.format = "s16p"
    ctx.bit_rate = bitrate
    frame_size = 1152  # fixed MPEG-1 layer III frame; libmp3lame wants whole frames
    out = bytearray()
    for start in range(0, len(pcm), frame_size):
        chunk = pcm[start : start + frame_size]
        if len(chunk) < frame_size:
            chunk = np.pad(chunk, (0, frame_size - len(chunk)))
        frame = av.AudioFrame.from_ndarray(chunk.reshape(1, -1), format="s16p", layout="mono")
        frame.sample_rate = sample_rate
        frame.pts = start
        for packet in ctx.encode(frame):
            out += bytes(packet)
    for packet in ctx.encode(None):
        out += bytes(packet)
    return bytes(out)


@dataclass
class SpeechStart:
    start_s: float


@dataclass
class SpeechOngoing:
    """Emitted once per utterance, after `interim_after_ms` of it have been heard."""

    start_s: float
    now_s: float


@dataclass
class SpeechEnd:
    start_s: float
    end_s: float


SpeechEvent = SpeechStart | SpeechOngoing | SpeechEnd


class EnergyEndpointer:
    """Splits a PCM s16le mono stream into utterances by frame energy.

    Time is measured in *stream* seconds (samples received), not wall time, so the result does
    not depend on how fast the client pushes audio.
    """

    FRAME_MS = 10

    def __init__(
        self,
        sample_rate: int,
        *,
        threshold: float,
        min_speech_ms: int,
        end_silence_ms: int,
        interim_after_ms: int,
    ) -> None:
        self._sr = sample_rate
        self._frame = sample_rate * self.FRAME_MS // 1000
        self._threshold = threshold
        self._min_speech_s = min_speech_ms / 1000
        self._end_silence_s = end_silence_ms / 1000
        self._interim_after_s = interim_after_ms / 1000
        self._pending = b""
        self._pos = 0  # samples consumed
        self._run_start: float | None = None  # start of the current voiced run
        self._speech_start: float | None = None  # set while inside an utterance
        self._last_voiced_end = 0.0
        self._ongoing_sent = False

    @property
    def in_speech(self) -> bool:
        return self._speech_start is not None

    def push(self, pcm: bytes) -> list[SpeechEvent]:
        data = self._pending + pcm
        frame_bytes = self._frame * 2
        usable = len(data) - len(data) % frame_bytes
        self._pending = data[usable:]
        events: list[SpeechEvent] = []
        if usable == 0:
            return events
        frames = np.frombuffer(data[:usable], dtype="<i2").astype(np.float64)
        rms = np.sqrt(np.mean(frames.reshape(-1, self._frame) ** 2, axis=1))
        for value in rms:
            start = self._pos / self._sr
            self._pos += self._frame
            end = self._pos / self._sr
            self._step(value >= self._threshold, start, end, events)
        return events

    def force_end(self) -> SpeechEnd | None:
        """End the utterance in progress now (client asked to finalize/close)."""
        if self._speech_start is None:
            return None
        ev = SpeechEnd(self._speech_start, self._last_voiced_end)
        self._speech_start = None
        self._run_start = None
        return ev

    def _step(self, voiced: bool, start: float, end: float, events: list[SpeechEvent]) -> None:
        if voiced:
            self._last_voiced_end = end
            if self._run_start is None:
                self._run_start = start
            if self._speech_start is None and end - self._run_start >= self._min_speech_s:
                self._speech_start = self._run_start
                self._ongoing_sent = False
                events.append(SpeechStart(self._speech_start))
            if (
                self._speech_start is not None
                and not self._ongoing_sent
                and end - self._speech_start >= self._interim_after_s
            ):
                self._ongoing_sent = True
                events.append(SpeechOngoing(self._speech_start, end))
            return
        self._run_start = None
        if self._speech_start is not None and end - self._last_voiced_end >= self._end_silence_s:
            events.append(SpeechEnd(self._speech_start, self._last_voiced_end))
            self._speech_start = None


@dataclass(frozen=True)
class OutputFormat:
    """An ElevenLabs-style output format string such as pcm_16000 or mp3_22050_32."""

    codec: str  # "pcm" or "mp3"
    sample_rate: int
    bitrate: int = 64000

    @classmethod
    def parse(cls, value: str) -> OutputFormat:
        parts = value.split("_")
        if parts[0] == "pcm" and len(parts) == 2:
            return cls("pcm", int(parts[1]))
        if parts[0] == "mp3" and len(parts) == 3:
            return cls("mp3", int(parts[1]), int(parts[2]) * 1000)
        raise ValueError(f"fake supports pcm_<rate> and mp3_<rate>_<kbps>, not {value!r}")

    @property
    def mime_type(self) -> str:
        return "audio/mpeg" if self.codec == "mp3" else "audio/pcm"


async def render_speech(text: str, fmt: OutputFormat, ms_per_char: float) -> tuple[bytes, float]:
    """Fake speech for `text` in `fmt`, plus its nominal duration in seconds."""
    duration = tts_duration_s(text, ms_per_char)
    if duration == 0.0:
        return b"", 0.0
    if fmt.codec == "pcm":
        return voice_like_pcm(duration, fmt.sample_rate), duration
    # MP3 encoding is CPU work; keep it off the event loop that also serves the STT fakes.
    data = await asyncio.to_thread(mp3_voice, duration, fmt.sample_rate, fmt.bitrate)
    return data, duration
