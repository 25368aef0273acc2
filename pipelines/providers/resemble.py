"""Resemble TTS (streaming websocket; REST synthesis for one-shot text)."""

from __future__ import annotations

from livekit.agents import tts as tts_base
from livekit.plugins import resemble
from livekit.plugins.resemble import tts as resemble_tts

from ..config import AgentSpec, ProviderConfigError, ProvidersConfig, require_key


def tts(agent: AgentSpec, cfg: ProvidersConfig) -> tts_base.TTS:
    key = require_key("resemble", cfg.resemble, "VOXARENA_RESEMBLE_API_KEY")
    voice = agent.voice_id or cfg.resemble.extra.get("voice_uuid")
    if not voice:
        raise ProviderConfigError("resemble", "no voice (set the agent's voiceId or VOXARENA_RESEMBLE_VOICE_UUID)")
    # The plugin reads its endpoints from module constants at call time; there are no constructor arguments.
    # Each call runs in its own job process, so setting them here affects only this call's process.
    if cfg.resemble.base_url:
        resemble_tts.RESEMBLE_REST_API_URL = cfg.resemble.base_url.rstrip("/") + "/synthesize"
    if cfg.resemble.extra.get("websocket_url"):
        resemble_tts.RESEMBLE_WEBSOCKET_URL = cfg.resemble.extra["websocket_url"]
    kwargs: dict = {}
    if agent.tts_model:
        kwargs["model"] = agent.tts_model
    return resemble.TTS(api_key=key, voice_uuid=voice, **kwargs)
