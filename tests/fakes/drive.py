"""Helpers for driving the real livekit plugins against the fakes from tests: synthetic speech
in, transcript events and audio frames out. Imports livekit, unlike the server modules, so the
standalone fake process does not need it."""

from __future__ import annotations

import asyncio

from livekit import rtc
from livekit.agents import stt, tts

from .audio import voice_like_pcm


def pcm_pattern(*segments: tuple[str, float], sample_rate: int = 16000) -> bytes:
    """("speech" | "silence", seconds) segments as mono s16le; speech is loud enough for the
    fakes' default energy threshold."""
    out = b""
    for kind, seconds in segments:
        if kind == "speech":
            out += voice_like_pcm(seconds, sample_rate)
        else:
            out += b"\x00\x00" * int(seconds * sample_rate)
    return out


def push_pcm(stream: stt.SpeechStream, pcm: bytes, *, sample_rate: int = 16000, frame_ms: int = 20) -> None:
    """Push PCM as `frame_ms` frames, as fast as possible (the fakes endpoint on stream time,
    so pacing does not change the result)."""
    step = sample_rate * frame_ms // 1000 * 2
    for i in range(0, len(pcm), step):
        chunk = pcm[i : i + step]
        stream.push_frame(rtc.AudioFrame(chunk, sample_rate, 1, len(chunk) // 2))


async def collect_events(
    stream: stt.SpeechStream,
    count: int,
    *,
    until: stt.SpeechEventType = stt.SpeechEventType.FINAL_TRANSCRIPT,
    timeout: float = 5.0,
) -> list[stt.SpeechEvent]:
    """All events up to and including the `count`-th event of type `until`."""
    events: list[stt.SpeechEvent] = []

    async def _read() -> None:
        seen = 0
        async for ev in stream:
            events.append(ev)
            seen += ev.type == until
            if seen == count:
                return

    await asyncio.wait_for(_read(), timeout)
    return events


def final_texts(events: list[stt.SpeechEvent]) -> list[str]:
    return [e.alternatives[0].text for e in events if e.type == stt.SpeechEventType.FINAL_TRANSCRIPT]


async def collect_audio(
    stream: tts.ChunkedStream | tts.SynthesizeStream, *, timeout: float = 5.0
) -> list[rtc.AudioFrame]:
    async def _read() -> list[rtc.AudioFrame]:
        return [ev.frame async for ev in stream]

    return await asyncio.wait_for(_read(), timeout)
