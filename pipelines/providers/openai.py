"""OpenAI (or any OpenAI-compatible endpoint) chat completions LLM."""

from __future__ import annotations

from typing import Any

from livekit.agents import llm as llm_base
from livekit.plugins import openai

from ..config import AgentSpec, ProvidersConfig, require_key


class OpenAILLM(openai.LLM):
    """The plugin names its provider after the base URL's host; metering and the price book need one stable key,
    whatever endpoint (OpenAI, a proxy, a compatible server) answers."""

    @property
    def provider(self) -> str:
        return "openai"


def llm(agent: AgentSpec, cfg: ProvidersConfig) -> llm_base.LLM[Any]:
    key = require_key("openai", cfg.openai, "VOXARENA_OPENAI_API_KEY")
    kwargs: dict[str, Any] = {"base_url": cfg.openai.base_url} if cfg.openai.base_url else {}
    return OpenAILLM(model=agent.llm_model or cfg.openai_model, api_key=key, **kwargs)
