"""Provider keys to builders. The key is the same word in the API, in pricing.yaml and in the module name."""

from __future__ import annotations

from collections.abc import Callable

from .config import AgentSpec, ProviderConfigError, ProvidersConfig
from .providers import assemblyai, deepgram, elevenlabs, google, openai, resemble

STT = {"deepgram": deepgram.stt, "assemblyai": assemblyai.stt, "elevenlabs": elevenlabs.stt}
LLM = {"gemini": google.llm, "openai": openai.llm}
TTS = {"elevenlabs": elevenlabs.tts, "resemble": resemble.tts, "google": google.tts}


def builder(kind: str, provider: str) -> Callable[[AgentSpec, ProvidersConfig], object]:
    table = {"stt": STT, "llm": LLM, "tts": TTS}[kind]
    try:
        return table[provider]
    except KeyError:
        raise ProviderConfigError(provider, f"unsupported {kind.upper()} provider; use one of {sorted(table)}") from None
