"""Google: Gemini LLM (google-genai) and Cloud Text-to-Speech (gRPC)."""

from __future__ import annotations

import os

from google.genai import types as genai_types
from livekit.agents import llm as llm_base
from livekit.agents import tts as tts_base
from livekit.plugins import google

from ..config import AgentSpec, ProviderConfigError, ProvidersConfig, require_key


def llm(agent: AgentSpec, cfg: ProvidersConfig) -> llm_base.LLM:
    key = require_key("gemini", cfg.google, "VOXARENA_GOOGLE_API_KEY")
    if cfg.google.base_url:
        # google-genai reads this for every call, including the plugin's prewarm `GET models`, which the
        # per-request http_options would miss. Job processes are per call, so the variable is ours to set.
        os.environ["GOOGLE_GEMINI_BASE_URL"] = cfg.google.base_url
    return google.LLM(
        model=agent.llm_model or cfg.gemini_model,
        api_key=key,
        vertexai=False,
        http_options=genai_types.HttpOptions(base_url=cfg.google.base_url) if cfg.google.base_url else None,
    )


def tts(agent: AgentSpec, cfg: ProvidersConfig) -> tts_base.TTS:
    creds_file = cfg.google.extra.get("credentials_file") or os.environ.get("GOOGLE_APPLICATION_CREDENTIALS", "")
    if not creds_file:
        raise ProviderConfigError(
            "google", "no Cloud TTS credentials (set VOXARENA_GOOGLE_CREDENTIALS_FILE to a service-account JSON)"
        )
    kwargs: dict = {"credentials_file": creds_file}
    if agent.voice_id:
        kwargs["voice_name"] = agent.voice_id
    if agent.language:
        kwargs["language"] = agent.language
    tts = google.TTS(**kwargs)
    endpoint = cfg.google.extra.get("tts_endpoint")
    if endpoint:
        # The plugin hard-codes texttospeech.googleapis.com; a regional or private endpoint needs our own client.
        import google.auth
        from google.api_core.client_options import ClientOptions
        from google.cloud import texttospeech

        credentials, _ = google.auth.load_credentials_from_file(
            creds_file, scopes=["https://www.googleapis.com/auth/cloud-platform"]
        )
        tts._client = texttospeech.TextToSpeechAsyncClient(
            credentials=credentials, client_options=ClientOptions(api_endpoint=endpoint)
        )
    return tts
