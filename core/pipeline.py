"""How the product's settings and a stored agent become what `pipelines/` takes: the job builds a call's pipeline
from them, the API process a text conversation's LLM."""

from __future__ import annotations

import json
from typing import Any

from core.settings import Settings
from pipelines.config import AgentSpec, ProviderCredentials, ProvidersConfig, TurnTaking, Voicemail


def providers_config(s: Settings) -> ProvidersConfig:
    return ProvidersConfig(
        deepgram=ProviderCredentials(s.deepgram_api_key, s.deepgram_base_url),
        assemblyai=ProviderCredentials(s.assemblyai_api_key, s.assemblyai_base_url),
        elevenlabs=ProviderCredentials(
            s.elevenlabs_api_key,
            s.elevenlabs_base_url,
            {"voice_id": s.elevenlabs_voice_id} if s.elevenlabs_voice_id else {},
        ),
        google=ProviderCredentials(
            s.google_api_key,
            s.google_base_url,
            {
                k: v
                for k, v in (("credentials_file", s.google_credentials_file), ("tts_endpoint", s.google_tts_endpoint))
                if v
            },
        ),
        resemble=ProviderCredentials(
            s.resemble_api_key,
            s.resemble_base_url,
            {
                k: v
                for k, v in (("voice_uuid", s.resemble_voice_uuid), ("websocket_url", s.resemble_websocket_url))
                if v
            },
        ),
        openai=ProviderCredentials(s.openai_api_key, s.openai_base_url),
        gemini_model=s.gemini_model,
        openai_model=s.openai_model,
        stt_chunk_ms=min(s.audio_input_frame_ms, 50),
    )


def agent_config(row: dict[str, Any]) -> dict[str, Any]:
    """An agent's ``config`` (its per-agent settings), from a raw row or a repository record."""
    config = row.get("config") or "{}"
    parsed: dict[str, Any] = json.loads(config) if isinstance(config, str) else config
    return parsed


def agent_spec(row: dict[str, Any]) -> AgentSpec:
    config = agent_config(row)
    return AgentSpec(
        id=row["id"],
        name=row["name"],
        system_prompt=row["system_prompt"],
        stt_provider=row["stt_provider"],
        llm_provider=row["llm_provider"],
        tts_provider=row["tts_provider"],
        first_message=row["first_message"],
        first_message_mode=row["first_message_mode"],
        voice_id=config.get("voiceId"),
        stt_model=config.get("sttModel"),
        llm_model=config.get("llmModel"),
        tts_model=config.get("ttsModel"),
        language=config.get("language"),
        fallback_stt_providers=tuple(config.get("fallbackSttProviders") or ()),
        fallback_llm_providers=tuple(config.get("fallbackLlmProviders") or ()),
        fallback_tts_providers=tuple(config.get("fallbackTtsProviders") or ()),
        error_message=config.get("errorMessage"),
        turn_taking=TurnTaking(
            min_endpointing_delay=config.get("minEndpointingDelay"),
            max_endpointing_delay=config.get("maxEndpointingDelay"),
            interruption_min_words=config.get("interruptionMinWords"),
            interruption_min_duration=config.get("interruptionMinDuration"),
            backchannel_words=tuple(config.get("backchannelWords") or ()),
            preemptive_generation=config.get("preemptiveGeneration"),
        ),
        voicemail=Voicemail(config.get("voicemailAction") or "hangup", config.get("voicemailMessage"))
        if config.get("voicemailDetection")
        else None,
        recording=config.get("recordingEnabled"),
        recording_notice=config.get("recordingNotice"),
    )
