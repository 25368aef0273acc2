"""AssemblyAI universal streaming STT (v3 websocket)."""

from __future__ import annotations

from typing import Any

from livekit.agents import stt as stt_base
from livekit.plugins import assemblyai

from ..config import STT_SAMPLE_RATE, AgentSpec, ProvidersConfig, require_key


def stt(agent: AgentSpec, cfg: ProvidersConfig, *, http_session: Any = None) -> stt_base.STT[Any]:
    key = require_key("assemblyai", cfg.assemblyai, "VOXARENA_ASSEMBLYAI_API_KEY")
    kwargs: dict[str, Any] = {}
    if cfg.assemblyai.base_url:
        kwargs["base_url"] = cfg.assemblyai.base_url
    if agent.stt_model:
        kwargs["model"] = agent.stt_model
    return assemblyai.STT(api_key=key, sample_rate=STT_SAMPLE_RATE, http_session=http_session, **kwargs)
