"""Provider keys to builders. The key is the same word in the API, in pricing.yaml and in the module name."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from .config import ProviderConfigError
from .providers import assemblyai, deepgram, elevenlabs, google, openai, resemble

Builder = Callable[..., Any]  # (agent, providers config, **wire or session) -> the plugin's STT, LLM or TTS

STT: dict[str, Builder] = {"deepgram": deepgram.stt, "assemblyai": assemblyai.stt, "elevenlabs": elevenlabs.stt}
LLM: dict[str, Builder] = {"gemini": google.llm, "openai": openai.llm}
TTS: dict[str, Builder] = {"elevenlabs": elevenlabs.tts, "resemble": resemble.tts, "google": google.tts}


def builder(kind: str, provider: str) -> Builder:
    table = {"stt": STT, "llm": LLM, "tts": TTS}[kind]
    try:
        return table[provider]
    except KeyError:
        raise ProviderConfigError(
            provider, f"unsupported {kind.upper()} provider; use one of {sorted(table)}"
        ) from None
