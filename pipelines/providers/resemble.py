"""Resemble TTS (streaming websocket; REST synthesis for one-shot text)."""

from __future__ import annotations

from typing import Any

from livekit.agents import tts as tts_base
from livekit.plugins import resemble
from livekit.plugins.resemble import tts as resemble_tts

from ..config import AgentSpec, ProviderConfigError, ProvidersConfig, require_key
from ..wire_meter import TextWire, Units, json_text_units


def _data(message: Any) -> int:
    """Characters of one synthesis request: its `data` (a sentence on the websocket, the whole text over REST)."""
    return len(str(message.get("data") or "")) if isinstance(message, dict) else 0


TTS_UNITS = Units(text=json_text_units(_data), request=_data)


def tts(agent: AgentSpec, cfg: ProvidersConfig, *, wire: TextWire | None = None) -> tts_base.TTS[Any]:
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
    kwargs: dict[str, Any] = {}
    if wire is not None:
        kwargs["http_session"] = wire.http_session(TTS_UNITS)
    if agent.tts_model:
        kwargs["model"] = agent.tts_model
    return resemble.TTS(api_key=key, voice_uuid=voice, **kwargs)
