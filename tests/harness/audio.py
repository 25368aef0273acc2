"""Test speech rendered by espeak-ng (converted with sox) and small signal helpers.

Rendered files are cached per (text, voice, format) in $TMPDIR/voxarena-audio-cache (VOXARENA_AUDIO_CACHE
overrides it), written atomically, so each phrase is rendered once per machine.
"""

from __future__ import annotations

import hashlib
import math
import os
import shutil
import subprocess
import tempfile
import wave
from pathlib import Path

import numpy as np

DEFAULT_TEXT = "Hello, this is a voxarena end to end test. Can you hear me clearly?"
# A frame counts as non-silent above this level. espeak speech sits around -20 dBFS; Opus-decoded
# digital silence is far below -70 dBFS.
SILENCE_DBFS = -50.0

_cache_dir: Path | None = None


def cache_dir() -> Path:
    global _cache_dir
    if _cache_dir is None:
        env = os.environ.get("VOXARENA_AUDIO_CACHE")
        _cache_dir = Path(env) if env else Path(tempfile.gettempdir()) / "voxarena-audio-cache"
        _cache_dir.mkdir(parents=True, exist_ok=True)
    return _cache_dir


def _need(tool: str) -> str:
    path = shutil.which(tool)
    if not path:
        raise RuntimeError(f"{tool} is not installed; run .ci/install-system.sh")
    return path


def _run(argv: list[str]) -> None:
    r = subprocess.run(argv, capture_output=True, text=True, timeout=60, check=False)
    if r.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} failed rc={r.returncode}: {r.stderr.strip()}")


def _key(*parts: object) -> str:
    return hashlib.sha256(repr(parts).encode()).hexdigest()[:16]


def render_speech(text: str = DEFAULT_TEXT, *, voice: str = "en-us", speed_wpm: int = 160) -> Path:
    """espeak-ng's own output (22050 Hz mono s16le WAV), cached."""
    out = cache_dir() / f"espeak-{_key(text, voice, speed_wpm)}.wav"
    if not out.exists():
        tmp = out.with_suffix(f".{os.getpid()}.tmp.wav")
        _run([_need("espeak-ng"), "-v", voice, "-s", str(speed_wpm), "-w", str(tmp), text])
        tmp.replace(out)
    return out


def speech_wav(
    text: str = DEFAULT_TEXT, *, sample_rate: int = 48000, voice: str = "en-us", speed_wpm: int = 160
) -> Path:
    """Speech as mono 16-bit PCM WAV at `sample_rate` (e.g. 48000 for WebRTC, 16000 for STT)."""
    src = render_speech(text, voice=voice, speed_wpm=speed_wpm)
    key = _key(text, voice) if speed_wpm == 160 else _key(text, voice, speed_wpm)  # the cache of 160 wpm stays
    out = cache_dir() / f"speech-{key}-{sample_rate}.wav"
    if not out.exists():
        tmp = out.with_suffix(f".{os.getpid()}.tmp.wav")
        _run([_need("sox"), str(src), "-r", str(sample_rate), "-c", "1", "-b", "16", "-e", "signed-integer", str(tmp)])
        tmp.replace(out)
    return out


def speech_ulaw_wav(text: str = DEFAULT_TEXT, *, voice: str = "en-us", pad_s: float = 0.5) -> Path:
    """Speech as 8 kHz mono G.711 u-law WAV for sipp's `rtp_stream` (payload type 0, PCMU).

    sipp skips only the RIFF header and sends the raw bytes, 160 per 20 ms packet. `pad_s` of
    silence is appended so a looping stream has audible gaps between repetitions.
    """
    src = render_speech(text, voice=voice)
    out = cache_dir() / f"speech-{_key(text, voice, pad_s)}-8k-ulaw.wav"
    if not out.exists():
        tmp = out.with_suffix(f".{os.getpid()}.tmp.wav")
        argv = [_need("sox"), str(src), "-r", "8000", "-c", "1", "-e", "u-law", "-b", "8", str(tmp)]
        if pad_s > 0:
            argv += ["pad", "0", str(pad_s)]
        _run(argv)
        tmp.replace(out)
    return out


def read_wav(path: Path | str) -> tuple[np.ndarray, int]:
    """(int16 mono samples, sample_rate) of a 16-bit PCM WAV. Multi-channel input is averaged."""
    with wave.open(str(path), "rb") as w:
        if w.getsampwidth() != 2:
            raise ValueError(f"{path}: expected 16-bit PCM, got {8 * w.getsampwidth()}-bit")
        rate, channels = w.getframerate(), w.getnchannels()
        data = np.frombuffer(w.readframes(w.getnframes()), dtype=np.int16)
    if channels > 1:
        data = data.reshape(-1, channels).mean(axis=1).astype(np.int16)
    return data, rate


def rms(samples: np.ndarray | bytes | memoryview) -> float:
    """Root mean square of int16 samples (0..32768)."""
    a = samples if isinstance(samples, np.ndarray) else np.frombuffer(samples, dtype=np.int16)
    if a.size == 0:
        return 0.0
    return float(np.sqrt(np.mean(np.square(a.astype(np.float64)))))


def dbfs(samples: np.ndarray | bytes | memoryview) -> float:
    r = rms(samples)
    return -120.0 if r <= 0 else 20.0 * math.log10(r / 32768.0)


def is_silent(samples: np.ndarray | bytes | memoryview, threshold_dbfs: float = SILENCE_DBFS) -> bool:
    return dbfs(samples) <= threshold_dbfs


def frames(samples: np.ndarray, sample_rate: int, frame_ms: int = 20) -> list[np.ndarray]:
    """Split into frames of `frame_ms`; the last partial frame is zero-padded."""
    n = sample_rate * frame_ms // 1000
    pad = (-len(samples)) % n
    if pad:
        samples = np.concatenate([samples, np.zeros(pad, dtype=np.int16)])
    return [samples[i : i + n] for i in range(0, len(samples), n)]


def nonsilent_frame_indexes(
    samples: np.ndarray, sample_rate: int, frame_ms: int = 20, threshold_dbfs: float = SILENCE_DBFS
) -> list[int]:
    return [i for i, f in enumerate(frames(samples, sample_rate, frame_ms)) if not is_silent(f, threshold_dbfs)]


# --- G.711 u-law, for RTP payloads seen by the sniffer -------------------------------------------------


def _ulaw_table() -> np.ndarray:
    table = np.zeros(256, dtype=np.int16)
    for i in range(256):
        u = ~i & 0xFF
        sign = u & 0x80
        exponent = (u >> 4) & 0x07
        mantissa = u & 0x0F
        sample = ((mantissa << 3) + 0x84) << exponent
        sample -= 0x84
        table[i] = -sample if sign else sample
    return table


_ULAW = _ulaw_table()


def ulaw_decode(payload: bytes) -> np.ndarray:
    return _ULAW[np.frombuffer(payload, dtype=np.uint8)]
