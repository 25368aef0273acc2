"""ElevenLabs: realtime Scribe STT and multi-stream-input TTS over websockets."""

from __future__ import annotations

from typing import Any

from livekit.agents import stt as stt_base
from livekit.agents import tts as tts_base
from livekit.plugins import elevenlabs

from ..config import STT_SAMPLE_RATE, AgentSpec, ProvidersConfig, require_key

# The plugin's default Scribe model is batch-only; a live call needs the realtime one.
STT_MODEL = "scribe_v2_realtime"
TTS_MODEL = "eleven_turbo_v2_5"
# Raw PCM instead of the plugin's MP3 default: no decode on the hot path.
TTS_ENCODING = "pcm_16000"


def stt(agent: AgentSpec, cfg: ProvidersConfig, *, http_session: Any = None) -> stt_base.STT:
    key = require_key("elevenlabs", cfg.elevenlabs, "VOXARENA_ELEVENLABS_API_KEY")
    kwargs: dict = {"base_url": cfg.elevenlabs.base_url} if cfg.elevenlabs.base_url else {}
    if agent.language:
        kwargs["language_code"] = agent.language
    return elevenlabs.STT(api_key=key, model=agent.stt_model or STT_MODEL, sample_rate=STT_SAMPLE_RATE,
                          http_session=http_session, **kwargs)


def tts(agent: AgentSpec, cfg: ProvidersConfig) -> tts_base.TTS:
    key = require_key("elevenlabs", cfg.elevenlabs, "VOXARENA_ELEVENLABS_API_KEY")
    kwargs: dict = {"base_url": cfg.elevenlabs.base_url} if cfg.elevenlabs.base_url else {}
    voice = agent.voice_id or cfg.elevenlabs.extra.get("voice_id")
    if voice:
        kwargs["voice_id"] = voice
    return elevenlabs.TTS(api_key=key, model=agent.tts_model or TTS_MODEL, encoding=TTS_ENCODING, **kwargs)
