"""The OpenAI provider through the real `livekit-plugins-openai` LLM against the OpenAI fake, and per-agent fallback
LLMs through LiveKit's FallbackAdapter: when the primary fails, the next provider answers the same request."""

from __future__ import annotations

import pytest
from livekit.agents import llm
from livekit.agents.utils import http_context

from pipelines.builder import build_pipeline
from pipelines.config import AgentSpec, ProviderCredentials, ProvidersConfig
from pipelines.providers import openai as openai_provider
from tests.fakes import FakeProviders
from tests.test_provider_fakes import run_chat as ask

SPEC = AgentSpec(
    id="a",
    name="a",
    system_prompt="",
    stt_provider="deepgram",
    llm_provider="gemini",
    tts_provider="elevenlabs",
    fallback_llm_providers=("openai",),
)


@pytest.fixture
async def fakes(monkeypatch: pytest.MonkeyPatch):
    async with FakeProviders(api_key="k") as f:
        monkeypatch.setenv("GOOGLE_GEMINI_BASE_URL", f.gemini_base_url)
        yield f


def config(fakes: FakeProviders) -> ProvidersConfig:
    def creds(url):
        return ProviderCredentials("k", url)

    return ProvidersConfig(
        deepgram=creds(fakes.deepgram_url),
        elevenlabs=creds(fakes.elevenlabs_base_url),
        google=creds(fakes.gemini_base_url),
        openai=creds(fakes.openai_base_url),
    )


async def test_the_openai_provider_streams_a_reply_with_exact_usage_under_a_stable_provider_key(fakes):
    fakes.update_script(llm_replies=["Hello from the fake OpenAI model."])
    model = openai_provider.llm(SPEC, config(fakes))
    async with http_context.open():
        text, usage = await ask(model)
        await model.aclose()
    assert text == "Hello from the fake OpenAI model."
    assert usage is not None and (usage.prompt_tokens, usage.completion_tokens) == (10, 6)
    assert model.provider == "openai" and model.model == "gpt-4o-mini"
    c = fakes.counters()["openai"]
    assert c["requests"] == c["completed"] == 1 and c["prompt_tokens"] == 10


async def test_a_fallback_llm_answers_when_the_primary_fails_and_the_primary_is_not_used_again(fakes):
    pipeline = build_pipeline(SPEC, config(fakes))
    assert pipeline.llm_providers == ("gemini", "openai")
    assert isinstance(pipeline.llm, llm.FallbackAdapter)
    fakes.fail("gemini", "reject")
    fakes.update_script(llm_replies=["The fallback answered."])
    async with http_context.open():
        text, _ = await ask(pipeline.llm)
        second, _ = await ask(pipeline.llm)
        await pipeline.llm.aclose()
    assert text == "The fallback answered." and second == "This is a scripted reply."
    c = fakes.counters()
    assert c["gemini"]["injected_failures"] >= 1 and c["gemini"]["completed"] == 0
    assert c["openai"]["completed"] == 2
    assert pipeline.llm.metrics_metadata["model_provider"] == "openai"


async def test_an_agent_without_fallbacks_gets_the_plain_provider(fakes):
    plain = AgentSpec(
        id="a",
        name="a",
        system_prompt="",
        stt_provider="deepgram",
        llm_provider="openai",
        tts_provider="elevenlabs",
        fallback_llm_providers=("openai",),
    )
    pipeline = build_pipeline(plain, config(fakes))
    assert pipeline.llm_providers == ("openai",) and not isinstance(pipeline.llm, llm.FallbackAdapter)
