"""Agent wire models (001: Agent { id, name, systemPrompt, sttProvider, llmProvider, ttsProvider, createdAt, updatedAt })."""

from __future__ import annotations

from typing import Annotated

from pydantic import AfterValidator, BaseModel, Field, model_validator

from .common import FirstMessageMode, LlmProvider, RequestBody, SttProvider, TtsProvider

_NAME = Field(min_length=1, max_length=200)
_PROMPT = Field(max_length=100_000)
_MODEL = Field(default=None, min_length=1, max_length=200)
MAX_FALLBACKS = 3


def _distinct(providers: list[str]) -> list[str]:
    if len(set(providers)) != len(providers):
        raise ValueError("a provider may be listed only once")
    return providers


# Further providers tried in order when the one before fails mid-call; each validated like the primary.
FallbackStt = Annotated[list[SttProvider], Field(max_length=MAX_FALLBACKS), AfterValidator(_distinct)]
FallbackLlm = Annotated[list[LlmProvider], Field(max_length=MAX_FALLBACKS), AfterValidator(_distinct)]
FallbackTts = Annotated[list[TtsProvider], Field(max_length=MAX_FALLBACKS), AfterValidator(_distinct)]
_ERROR_MESSAGE = Field(default=None, min_length=1, max_length=1_000)


class AgentCreate(RequestBody):
    name: str = _NAME
    systemPrompt: str = _PROMPT
    sttProvider: SttProvider = "deepgram"
    llmProvider: LlmProvider = "gemini"
    ttsProvider: TtsProvider = "elevenlabs"
    firstMessage: str | None = Field(default=None, max_length=10_000)
    firstMessageMode: FirstMessageMode = "assistant_waits"
    voiceId: str | None = _MODEL
    sttModel: str | None = _MODEL
    llmModel: str | None = _MODEL
    ttsModel: str | None = _MODEL
    language: str | None = Field(default=None, min_length=2, max_length=35)
    fallbackSttProviders: FallbackStt | None = None
    fallbackLlmProviders: FallbackLlm | None = None
    fallbackTtsProviders: FallbackTts | None = None
    errorMessage: str | None = _ERROR_MESSAGE


class AgentUpdate(RequestBody):
    """PUT and PATCH: every field optional; what is sent replaces what is stored."""

    name: str | None = Field(default=None, min_length=1, max_length=200)
    systemPrompt: str | None = Field(default=None, max_length=100_000)
    sttProvider: SttProvider | None = None
    llmProvider: LlmProvider | None = None
    ttsProvider: TtsProvider | None = None
    firstMessage: str | None = Field(default=None, max_length=10_000)
    firstMessageMode: FirstMessageMode | None = None
    voiceId: str | None = _MODEL
    sttModel: str | None = _MODEL
    llmModel: str | None = _MODEL
    ttsModel: str | None = _MODEL
    language: str | None = Field(default=None, min_length=2, max_length=35)
    fallbackSttProviders: FallbackStt | None = None
    fallbackLlmProviders: FallbackLlm | None = None
    fallbackTtsProviders: FallbackTts | None = None
    errorMessage: str | None = _ERROR_MESSAGE

    @model_validator(mode="after")
    def _required_fields_not_null(self) -> "AgentUpdate":
        for name in ("name", "systemPrompt", "sttProvider", "llmProvider", "ttsProvider", "firstMessageMode"):
            if name in self.model_fields_set and getattr(self, name) is None:
                raise ValueError(f"{name} cannot be null")
        return self

    def changes(self) -> dict[str, object]:
        return {name: getattr(self, name) for name in self.model_fields_set}


class Agent(BaseModel):
    id: str
    name: str
    systemPrompt: str
    sttProvider: str
    llmProvider: str
    ttsProvider: str
    firstMessage: str | None
    firstMessageMode: str
    voiceId: str | None
    sttModel: str | None
    llmModel: str | None
    ttsModel: str | None
    language: str | None
    fallbackSttProviders: list[str] = Field(description="STT providers tried in order when the primary fails.")
    fallbackLlmProviders: list[str] = Field(description="LLM providers tried in order when the primary fails.")
    fallbackTtsProviders: list[str] = Field(description="TTS providers tried in order when the primary fails.")
    errorMessage: str | None = Field(
        description="What the agent says before it ends a call on a provider failure (null: a default apology).")
    createdAt: str
    updatedAt: str


class AgentList(BaseModel):
    agents: list[Agent]
    total: int
