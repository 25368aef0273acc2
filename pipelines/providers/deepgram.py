"""Deepgram streaming STT (`/v1/listen` websocket)."""

from __future__ import annotations

from typing import Any

from livekit.agents import stt as stt_base
from livekit.plugins import deepgram

from ..config import STT_SAMPLE_RATE, AgentSpec, ProvidersConfig, require_key

DEFAULT_MODEL = "nova-3"


def stt(agent: AgentSpec, cfg: ProvidersConfig, *, http_session: Any = None) -> stt_base.STT[Any]:
    key = require_key("deepgram", cfg.deepgram, "VOXARENA_DEEPGRAM_API_KEY")
    kwargs: dict[str, Any] = {"base_url": cfg.deepgram.base_url} if cfg.deepgram.base_url else {}
    return deepgram.STT(
        api_key=key,
        model=agent.stt_model or DEFAULT_MODEL,
        language=agent.language or "en-US",
        sample_rate=STT_SAMPLE_RATE,
        http_session=http_session,
        **kwargs,
    )
