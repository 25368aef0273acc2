"""What the pipeline builder needs to know, as plain data: the agent's choices and the providers' credentials.

`pipelines/` never imports `api/`; the worker maps its settings and the stored agent onto these."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, Final

# What an agent says before it hangs up on a provider failure it cannot recover from (an agent's `errorMessage`
# replaces it).
DEFAULT_ERROR_MESSAGE = (
    "I'm sorry, I'm having a technical problem and I have to end this call. Please call back in a few minutes."
)


# How a turn ends (pipelines/builder.py `turn_handling`); the first is the default.
TURN_DETECTION_MODES = ("transcript", "model", "vad", "stt")
# Which silero VAD runs (pipelines/builder.py `load_vad`): `onnx`, the livekit-plugins-silero model on onnxruntime,
# one session per job process; `native`, LiveKit's livekit-local-inference build of the same model, loaded once in
# the forkserver and shared by every job process.
VAD_ENGINES = ("onnx", "native")


# Every STT plugin is built for 16 kHz 16-bit mono PCM; the wire meter turns the bytes a provider accepted into
# seconds with it.
STT_SAMPLE_RATE: Final = 16_000


class ProviderConfigError(Exception):
    """A provider cannot be built (missing key, unsupported choice). Not retryable: the call ends with this reason."""

    retryable = False

    def __init__(self, provider: str, message: str) -> None:
        super().__init__(f"{provider}: {message}")
        self.provider = provider


@dataclass(frozen=True)
class ProviderCredentials:
    api_key: str = ""
    base_url: str = ""
    extra: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class ProvidersConfig:
    deepgram: ProviderCredentials = ProviderCredentials()
    assemblyai: ProviderCredentials = ProviderCredentials()
    elevenlabs: ProviderCredentials = ProviderCredentials()
    google: ProviderCredentials = ProviderCredentials()
    resemble: ProviderCredentials = ProviderCredentials()
    openai: ProviderCredentials = ProviderCredentials()
    gemini_model: str = "gemini-2.5-flash"
    openai_model: str = "gpt-4o-mini"
    # Milliseconds of caller audio a streaming STT is sent at a time (where its plugin lets the product choose): the
    # job's input frame, so no audio waits for a larger chunk to fill; at most 50 ms, the plugins' own chunk.
    stt_chunk_ms: int = 50


@dataclass(frozen=True)
class TurnTaking:
    """An agent's own turn-taking settings; None leaves the product's default (its settings, then LiveKit's)."""

    # Seconds of silence before a finished-sounding turn ends, and the longest wait after an unfinished-sounding one.
    min_endpointing_delay: float | None = None
    max_endpointing_delay: float | None = None
    # What the caller must say while the agent speaks to interrupt it: at least this many words (0: the VAD's speech
    # alone), and at least this many seconds of speech.
    interruption_min_words: int | None = None
    interruption_min_duration: float | None = None
    # Short acknowledgements ("mhm", "yeah") that never interrupt the agent: heard while it speaks, they are dropped.
    backchannel_words: tuple[str, ...] = ()
    # Start the LLM on the STT's final transcript, before the end of turn is decided (discarded if the caller goes on).
    preemptive_generation: bool | None = None


@dataclass(frozen=True)
class Voicemail:
    """An outbound agent's voicemail detection (LiveKit's answering-machine detection over the agent's own LLM):
    what it does when a machine answers. ``hangup`` ends the call at once; ``leave_message`` says `message` once the
    greeting is over (after its beep or silence), then ends it. An IVR or a full mailbox is always hung up on."""

    action: str = "hangup"
    message: str | None = None


@dataclass(frozen=True)
class AgentSpec:
    """An agent as the pipeline sees it."""

    id: str
    name: str
    system_prompt: str
    stt_provider: str
    llm_provider: str
    tts_provider: str
    first_message: str | None = None
    first_message_mode: str = "assistant_waits"
    voice_id: str | None = None
    stt_model: str | None = None
    llm_model: str | None = None
    tts_model: str | None = None
    language: str | None = None
    # Providers that take over, in order, when the one before fails (LiveKit's FallbackAdapter).
    fallback_stt_providers: tuple[str, ...] = ()
    fallback_llm_providers: tuple[str, ...] = ()
    fallback_tts_providers: tuple[str, ...] = ()
    # What the agent says before it hangs up on a provider failure it cannot recover from.
    error_message: str | None = None
    turn_taking: TurnTaking = TurnTaking()
    # Outbound phone calls only: who answered is decided before the agent speaks (None: detection off).
    voicemail: Voicemail | None = None
    # Whether the call is recorded (None: the product's default decides) and what the agent says first when it is.
    recording: bool | None = None
    recording_notice: str | None = None


def require_key(provider: str, creds: ProviderCredentials, setting: str) -> str:
    if not creds.api_key:
        raise ProviderConfigError(provider, f"no API key configured (set {setting})")
    return creds.api_key


def prompt_with_context(prompt: str, context: dict[str, Any] | None) -> str:
    """The system prompt with the call's live context appended, so the LLM sees it from the first turn."""
    if not context:
        return prompt
    return (
        f"{prompt}\n\nContext for this call (JSON, from the operator; use it, do not read it out verbatim):\n"
        f"{json.dumps(context, ensure_ascii=False, sort_keys=True)}"
    )
