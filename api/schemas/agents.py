"""Agent wire models (001: Agent { id, name, systemPrompt, sttProvider, llmProvider, ttsProvider, createdAt, updatedAt })."""

from __future__ import annotations

from pydantic import BaseModel, Field, model_validator

from .common import FirstMessageMode, LlmProvider, RequestBody, SttProvider, TtsProvider

_NAME = Field(min_length=1, max_length=200)
_PROMPT = Field(max_length=100_000)
_MODEL = Field(default=None, min_length=1, max_length=200)


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
    createdAt: str
    updatedAt: str


class AgentList(BaseModel):
    agents: list[Agent]
    total: int
