"""ElevenLabs: realtime Scribe STT and multi-stream-input TTS over websockets."""

from __future__ import annotations

from typing import Any, Final

from livekit.agents import stt as stt_base
from livekit.agents import tts as tts_base
from livekit.plugins import elevenlabs

from ..config import STT_SAMPLE_RATE, AgentSpec, ProvidersConfig, require_key
from ..wire_meter import TextWire, Units, json_text_units

# The plugin's default Scribe model is batch-only; a live call needs the realtime one.
STT_MODEL = "scribe_v2_realtime"
TTS_MODEL = "eleven_turbo_v2_5"
# Raw PCM instead of the plugin's MP3 default: no decode on the hot path.
TTS_ENCODING: Final = "pcm_16000"


def stt(agent: AgentSpec, cfg: ProvidersConfig, *, http_session: Any = None) -> stt_base.STT[Any]:
    key = require_key("elevenlabs", cfg.elevenlabs, "VOXARENA_ELEVENLABS_API_KEY")
    kwargs: dict[str, Any] = {"base_url": cfg.elevenlabs.base_url} if cfg.elevenlabs.base_url else {}
    if agent.language:
        kwargs["language_code"] = agent.language
    return elevenlabs.STT(
        api_key=key,
        model=agent.stt_model or STT_MODEL,
        sample_rate=STT_SAMPLE_RATE,
        http_session=http_session,
        **kwargs,
    )


def _texts(message: Any) -> int:
    """Characters of speech in one message: its text, or the texts of its dialogue inputs."""
    if not isinstance(message, dict):
        return 0
    inputs = message.get("inputs")
    if isinstance(inputs, list):
        return sum(len(str(i.get("text") or "")) for i in inputs if isinstance(i, dict))
    return len(str(message.get("text") or ""))


def _streamed(message: Any) -> int:
    # The single space that opens a context (it carries the voice settings) is a protocol marker, not speech.
    return 0 if isinstance(message, dict) and "voice_settings" in message else _texts(message)


TTS_UNITS = Units(text=json_text_units(_streamed), request=_texts)


def tts(agent: AgentSpec, cfg: ProvidersConfig, *, wire: TextWire | None = None) -> tts_base.TTS[Any]:
    key = require_key("elevenlabs", cfg.elevenlabs, "VOXARENA_ELEVENLABS_API_KEY")
    kwargs: dict[str, Any] = {"base_url": cfg.elevenlabs.base_url} if cfg.elevenlabs.base_url else {}
    voice = agent.voice_id or cfg.elevenlabs.extra.get("voice_id")
    if voice:
        kwargs["voice_id"] = voice
    if wire is not None:
        kwargs["http_session"] = wire.http_session(TTS_UNITS)
    return elevenlabs.TTS(api_key=key, model=agent.tts_model or TTS_MODEL, encoding=TTS_ENCODING, **kwargs)
