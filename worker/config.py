"""Maps the product's settings and stored agents onto what `pipelines/` takes, and parses dispatch metadata."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from api.settings import Settings
from pipelines.config import AgentSpec, ProviderCredentials, ProvidersConfig


def providers_config(s: Settings) -> ProvidersConfig:
    return ProvidersConfig(
        deepgram=ProviderCredentials(s.deepgram_api_key, s.deepgram_base_url),
        assemblyai=ProviderCredentials(s.assemblyai_api_key, s.assemblyai_base_url),
        elevenlabs=ProviderCredentials(s.elevenlabs_api_key, s.elevenlabs_base_url,
                                       {"voice_id": s.elevenlabs_voice_id} if s.elevenlabs_voice_id else {}),
        google=ProviderCredentials(s.google_api_key, s.google_base_url,
                                   {k: v for k, v in (("credentials_file", s.google_credentials_file),
                                                      ("tts_endpoint", s.google_tts_endpoint)) if v}),
        resemble=ProviderCredentials(s.resemble_api_key, s.resemble_base_url,
                                     {k: v for k, v in (("voice_uuid", s.resemble_voice_uuid),
                                                        ("websocket_url", s.resemble_websocket_url)) if v}),
        openai=ProviderCredentials(s.openai_api_key, s.openai_base_url),
        gemini_model=s.gemini_model,
        openai_model=s.openai_model,
    )


def agent_spec(row: dict[str, Any]) -> AgentSpec:
    config = json.loads(row.get("config") or "{}")
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
    )


class BadDispatch(ValueError):
    pass


@dataclass(frozen=True)
class DispatchMeta:
    agent_id: str
    session_id: str | None
    owner_id: str | None
    direction: str = "inbound"
    phone_number: str | None = None
    call_id: str | None = None  # an outbound call: the job dials it

    @classmethod
    def parse(cls, raw: str) -> "DispatchMeta":
        try:
            data = json.loads(raw or "{}")
        except ValueError as e:
            raise BadDispatch(f"dispatch metadata is not JSON: {e}") from None
        if not isinstance(data, dict) or not isinstance(data.get("agent_id"), str):
            raise BadDispatch("dispatch metadata has no agent_id")
        direction = data.get("direction", "inbound")
        if direction not in ("inbound", "outbound"):
            raise BadDispatch(f"unknown direction {direction!r}")
        return cls(
            agent_id=data["agent_id"],
            session_id=data.get("session_id"),
            owner_id=data.get("owner_id"),
            direction=direction,
            phone_number=data.get("phone_number"),
            call_id=data.get("call_id") if isinstance(data.get("call_id"), str) else None,
        )
