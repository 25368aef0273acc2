"""STT is billed for what the provider's socket accepted: the real Deepgram, AssemblyAI and ElevenLabs plugins,
each given the meter's HTTP session, against the provider fakes (which count what they received)."""

from __future__ import annotations

import asyncio
from decimal import Decimal

import pytest
from livekit.agents import APIConnectOptions, stt
from livekit.agents.utils import http_context

from pipelines.config import STT_SAMPLE_RATE, AgentSpec, ProviderCredentials, ProvidersConfig
from pipelines.metering import CallMeter
from pipelines.pricing import PriceBook
from pipelines.providers import assemblyai, deepgram, elevenlabs
from tests.fakes import FakeProviders
from tests.fakes.drive import pcm_pattern, push_pcm
from tests.test_metering import ListSink

SPEC = AgentSpec(id="a", name="a", system_prompt="", stt_provider="deepgram", llm_provider="gemini",
                 tts_provider="elevenlabs")
AUDIO = pcm_pattern(("silence", 0.2), ("speech", 0.6), ("silence", 0.6), ("speech", 0.5), ("silence", 0.5))
BUILDERS = {"deepgram": deepgram.stt, "assemblyai": assemblyai.stt, "elevenlabs_stt": elevenlabs.stt}


@pytest.fixture
async def fakes():
    async with FakeProviders(api_key="k") as f:
        yield f


def config(fakes: FakeProviders) -> ProvidersConfig:
    return ProvidersConfig(deepgram=ProviderCredentials("k", fakes.deepgram_url),
                           assemblyai=ProviderCredentials("k", fakes.assemblyai_url),
                           elevenlabs=ProviderCredentials("k", fakes.elevenlabs_base_url))


def meter(sink: ListSink) -> CallMeter:
    return CallMeter(PriceBook.load(), sink, owner_id="alice", session_id="s1", agent_id="a1", key_scope="s1/j1")


def build(fake: str, fakes: FakeProviders, m: CallMeter) -> stt.STT:
    provider = fake.removesuffix("_stt")
    session = m.stt_http_session(http_context.http_session(), provider=provider, sample_rate=STT_SAMPLE_RATE)
    plugin = BUILDERS[fake](SPEC, config(fakes), http_session=session)
    session.model = plugin.model
    return plugin


@pytest.mark.parametrize("fake", ["deepgram", "assemblyai", "elevenlabs_stt"])
async def test_metered_seconds_equal_what_the_provider_received(fakes, fake):
    sink = ListSink()
    m = meter(sink)
    async with http_context.open():
        stream = build(fake, fakes, m).stream()
        push_pcm(stream, AUDIO)
        await fakes.wait_for(lambda c: c[fake]["audio_bytes"] == len(AUDIO), timeout=10)
        await stream.aclose()
        await m.close()
    received = Decimal(str(fakes.counters()[fake]["audio_seconds"]))
    metered = sum(e.quantity for e in sink.events) * 60
    assert metered == received == Decimal(len(AUDIO)) / (STT_SAMPLE_RATE * 2), (metered, received)
    assert {e.provider for e in sink.events} == {fake.removesuffix("_stt")}
    assert all(e.event_type == "stt_minutes" and e.model for e in sink.events)


@pytest.mark.parametrize("fake", ["deepgram", "assemblyai"])
async def test_a_provider_that_never_connected_costs_nothing(fakes, fake):
    fakes.fail(fake, "reject")
    sink = ListSink()
    m = meter(sink)
    async with http_context.open():
        stream = build(fake, fakes, m).stream(conn_options=APIConnectOptions(max_retry=1, retry_interval=0.1,
                                                                              timeout=2.0))
        push_pcm(stream, AUDIO)
        stream.end_input()
        with pytest.raises(Exception):
            async for _ in stream:
                pass
        await fakes.wait_for(lambda c: c[fake]["injected_failures"] >= 1, timeout=10)
        await stream.aclose()
        await asyncio.sleep(0)
        await m.close()
    assert fakes.counters()[fake]["audio_bytes"] == 0
    assert sink.events == []  # not even a zero-quantity event
