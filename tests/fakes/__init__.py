"""Fake provider servers (Deepgram, AssemblyAI, ElevenLabs, Gemini, Resemble, Google Cloud TTS) that speak each
provider's real wire protocol, so the real livekit plugins run against them unmodified.

Test-only: nothing here ships in the product.
"""

from .server import FakeProviders, build_app, urls_for
from .state import (
    ASSEMBLYAI,
    DEEPGRAM,
    ELEVENLABS_STT,
    ELEVENLABS_TTS,
    GEMINI,
    GOOGLE_TTS,
    PROVIDERS,
    RESEMBLE,
    FakeScript,
    FakeState,
)

__all__ = [
    "ASSEMBLYAI",
    "DEEPGRAM",
    "ELEVENLABS_STT",
    "ELEVENLABS_TTS",
    "GEMINI",
    "GOOGLE_TTS",
    "PROVIDERS",
    "RESEMBLE",
    "FakeProviders",
    "FakeScript",
    "FakeState",
    "build_app",
    "urls_for",
]
