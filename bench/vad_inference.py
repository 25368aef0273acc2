"""Section 6c (`--only vad`): what a call's VAD costs in CPU, its inference on the call's loop (the product's default)
against LiveKit's way, each 32 ms window handed to a thread and back, for both engines.

One process, the same minute of audio (espeak-ng speech, a second of silence after each sentence) pushed into a VAD
stream in 20 ms frames as RoomIO would, the loop yielding between frames; the process's CPU time (all threads, so
the pool's too) per second of audio; the ways alternated, 5 rounds each, medians. The events of each way are
compared: inline changes where the inference runs, never what it says."""

from __future__ import annotations

import asyncio
import time
import wave

from .common import Results, median

AUDIO_S = 60
ROUNDS = 5
SENTENCES = (
    "Hello there, how are you today?",
    "I would like to book a table for four people on Friday evening.",
    "My number is five five five, one two three four.",
)


def _audio() -> bytes:
    from tests.harness.audio import speech_wav

    parts = []
    for text in SENTENCES:
        with wave.open(str(speech_wav(text, sample_rate=16_000)), "rb") as w:
            parts.append(w.readframes(w.getnframes()) + bytes(16_000 * 2))
    pcm = b"".join(parts)
    return (pcm * (AUDIO_S * 32_000 // len(pcm) + 1))[: AUDIO_S * 32_000]


async def _one(engine: str, inline: bool, pcm: bytes) -> tuple[float, int]:
    """CPU-ms per audio-second, and the count of speech starts and ends."""
    from livekit import rtc
    from livekit.agents import vad

    from pipelines.builder import load_vad

    stream = load_vad(engine, 0.4, inline=inline).stream()
    edges = 0

    async def consume() -> None:
        nonlocal edges
        async for ev in stream:
            edges += ev.type != vad.VADEventType.INFERENCE_DONE

    cpu0 = time.process_time()
    consumer = asyncio.create_task(consume())
    step = 320 * 2  # 20 ms
    for i in range(0, len(pcm), step):
        stream.push_frame(rtc.AudioFrame(pcm[i : i + step], 16_000, 1, step // 2))
        await asyncio.sleep(0)
    stream.end_input()
    await consumer
    await stream.aclose()
    return (time.process_time() - cpu0) / AUDIO_S * 1000, edges


async def run(results: Results, *, quick: bool = False) -> None:
    section = "6c VAD inference"
    pcm = _audio()
    rounds = 2 if quick else ROUNDS
    for engine in ("onnx", "native"):
        cpu: dict[bool, list[float]] = {True: [], False: []}
        edges: dict[bool, set[int]] = {True: set(), False: set()}
        for _ in range(rounds):
            for inline in (True, False):
                ms, n = await _one(engine, inline, pcm)
                cpu[inline].append(ms)
                edges[inline].add(n)
        on, off = median(cpu[True]), median(cpu[False])
        results.add(
            section,
            f"{engine}: CPU-ms per audio-second, inline / in a thread (LiveKit's way), median of {rounds} "
            "(min-max); speech starts and ends",
            f"{on:.1f} ({min(cpu[True]):.1f}-{max(cpu[True]):.1f}) / {off:.1f} ({min(cpu[False]):.1f}-"
            f"{max(cpu[False]):.1f}): {off - on:.1f} ms less per call-second inline ({(off - on) / off:.0%}); "
            f"{sorted(edges[True])} / {sorted(edges[False])}",
            "the same events",
            edges[True] == edges[False] and len(edges[True]) == 1,
        )
