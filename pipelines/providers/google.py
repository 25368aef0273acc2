"""Google: Gemini LLM (google-genai) and Cloud Text-to-Speech (gRPC)."""

from __future__ import annotations

import os
import ssl
from collections.abc import AsyncIterator
from typing import Any

import google.auth as google_auth
from google import genai
from google.api_core.client_options import ClientOptions
from google.cloud import texttospeech
from google.genai import types as genai_types
from livekit.agents import llm as llm_base
from livekit.agents import tts as tts_base
from livekit.agents.types import NOT_GIVEN
from livekit.agents.utils import http_context
from livekit.plugins import google
from livekit.plugins.google import llm as google_llm
from pydantic import BaseModel

from ..config import AgentSpec, ProviderConfigError, ProvidersConfig, require_key
from ..wire_meter import Counter, TextWire
from . import gemini_request

# The plugin's scope for its own client (livekit/plugins/google/tts.py `_ensure_client`).
CLOUD_PLATFORM = "https://www.googleapis.com/auth/cloud-platform"


def tls_context() -> ssl.SSLContext:
    """The process's one TLS context: LiveKit's, which its HTTP sessions use and builds once per process (honouring
    SSL_CERT_FILE/SSL_CERT_DIR), given to the google-genai clients too. Left to itself, each genai client loads the
    CA bundle three times (its httpx, aiohttp and websocket contexts, 50-70 ms each) on the event loop at every job
    start. The job process's prewarm calls this, so no job start loads a CA bundle."""
    return http_context._create_ssl_context()


def _genai_client(**kwargs: Any) -> genai.Client:
    # httpx takes the context as `verify`, aiohttp as `ssl`; google-genai keeps for each the keys it accepts.
    tls = tls_context()
    kwargs.setdefault(
        "http_options",
        genai_types.HttpOptions(client_args={"verify": tls}, async_client_args={"verify": tls, "ssl": tls}),
    )
    # the conversation of each streamed request converted without genai re-validating it (gemini_request.py)
    return gemini_request.install(genai.Client(**kwargs))


def prewarm() -> None:
    """Before any job, what would otherwise block the event loop of a job start: the TLS context, a first genai
    client (its first construction imports its HTTP transport, some 130 ms) and genai's models. Run in the
    forkserver first (worker/entrypoint.py), so that every job process forked from it shares all three copy-on-write,
    then once per job process, where it finds them built (a job process's own share drops from ~20 MB to ~13 MB:
    bench/README.md, job processes); under the thread executor, once in the process."""
    build_models()
    tls_context()
    _genai_client(api_key="prewarm", vertexai=False).close()


_models_built = False  # in this process, or in the forkserver it was forked from


def build_models() -> None:
    """google-genai defines its ~470 pydantic models with forward references, so pydantic builds each one at its
    first use: a call's first Gemini reply built ~110 ms of them on the job's event loop. Built here instead (~0.2 s
    once). Once built, not even looked at again: reading each model class writes its reference count, which copies
    the pages they share with the forkserver into every job process (~3.7 MB each)."""
    global _models_built
    if _models_built:
        return
    for model in vars(genai_types).values():
        if isinstance(model, type) and issubclass(model, BaseModel) and not model.__pydantic_complete__:
            model.model_rebuild()
    _models_built = True


# google.LLM builds its genai Client inside its constructor and passes it no http options (its own `http_options`
# are per request), so the process-wide TLS context can only reach the client through the name it calls.
google_llm.Client = _genai_client  # type: ignore[assignment, misc]  # a patch of the library, on purpose


def llm(agent: AgentSpec, cfg: ProvidersConfig) -> llm_base.LLM[Any]:
    key = require_key("gemini", cfg.google, "VOXARENA_GOOGLE_API_KEY")
    if cfg.google.base_url:
        # google-genai reads this for every call, including the plugin's prewarm `GET models`, which the
        # per-request http_options would miss. Job processes are per call, so the variable is ours to set.
        os.environ["GOOGLE_GEMINI_BASE_URL"] = cfg.google.base_url
    return google.LLM(
        model=agent.llm_model or cfg.gemini_model,
        api_key=key,
        vertexai=False,
        http_options=genai_types.HttpOptions(base_url=cfg.google.base_url) if cfg.google.base_url else NOT_GIVEN,
    )


class GoogleTTS(google.TTS):
    """The plugin, with its gRPC client made for our endpoint when one is set (the plugin hard-codes
    texttospeech.googleapis.com) and the text it sends counted on the call's wire."""

    def __init__(self, *, endpoint: str | None, wire: TextWire | None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._endpoint = endpoint
        self._wire = wire

    def _ensure_client(self) -> Any:
        if self._client is None and self._endpoint:
            credentials, _ = google_auth.load_credentials_from_file(self._credentials_file, scopes=[CLOUD_PLATFORM])
            self._client = texttospeech.TextToSpeechAsyncClient(
                credentials=credentials, client_options=ClientOptions(api_endpoint=self._endpoint)
            )
        client = super()._ensure_client()
        return client if self._wire is None else _CountedClient(client, self._wire.count)


class _CountedClient:
    """The plugin's calls on the real client, counting the characters of each synthesis input once it went out."""

    def __init__(self, client: texttospeech.TextToSpeechAsyncClient, count: Counter) -> None:
        self._client = client
        self._count = count

    async def streaming_synthesize(self, requests: AsyncIterator[Any], **kwargs: Any) -> Any:
        return await self._client.streaming_synthesize(self._counted(requests), **kwargs)

    async def _counted(self, requests: AsyncIterator[Any]) -> AsyncIterator[Any]:
        async for request in requests:
            yield request
            # gRPC asks for the next request only once it has written this one
            if n := _characters(request.input):
                self._count(n)

    async def synthesize_speech(self, *, input: Any, **kwargs: Any) -> Any:
        response = await self._client.synthesize_speech(input=input, **kwargs)
        self._count(_characters(input))
        return response


def _characters(synthesis_input: Any) -> int:
    return len(synthesis_input.text or synthesis_input.markup or getattr(synthesis_input, "ssml", ""))


def tts(agent: AgentSpec, cfg: ProvidersConfig, *, wire: TextWire | None = None) -> tts_base.TTS[Any]:
    creds_file = cfg.google.extra.get("credentials_file") or os.environ.get("GOOGLE_APPLICATION_CREDENTIALS", "")
    if not creds_file:
        raise ProviderConfigError(
            "google", "no Cloud TTS credentials (set VOXARENA_GOOGLE_CREDENTIALS_FILE to a service-account JSON)"
        )
    kwargs: dict[str, Any] = {"credentials_file": creds_file}
    if agent.voice_id:
        kwargs["voice_name"] = agent.voice_id
    if agent.language:
        kwargs["language"] = agent.language
    return GoogleTTS(endpoint=cfg.google.extra.get("tts_endpoint") or None, wire=wire, **kwargs)
