"""AssemblyAI universal streaming STT (v3 websocket)."""

from __future__ import annotations

from livekit.agents import stt as stt_base
from livekit.plugins import assemblyai

from ..config import AgentSpec, ProvidersConfig, require_key


def stt(agent: AgentSpec, cfg: ProvidersConfig) -> stt_base.STT:
    key = require_key("assemblyai", cfg.assemblyai, "VOXARENA_ASSEMBLYAI_API_KEY")
    kwargs: dict = {}
    if cfg.assemblyai.base_url:
        kwargs["base_url"] = cfg.assemblyai.base_url
    if agent.stt_model:
        kwargs["model"] = agent.stt_model
    return assemblyai.STT(api_key=key, **kwargs)
