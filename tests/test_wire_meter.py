"""STT and TTS are billed for what the provider accepted: the real plugins, each given the meter's HTTP session (STT)
or wire (TTS), against the provider fakes (which count what they received)."""

from __future__ import annotations

import asyncio
import dataclasses
from decimal import Decimal

import aiohttp
import pytest
from livekit.agents import APIConnectOptions, APIError, stt
from livekit.agents.utils import http_context

from pipelines import registry
from pipelines.config import STT_SAMPLE_RATE, AgentSpec, ProviderCredentials, ProvidersConfig
from pipelines.metering import CallMeter
from pipelines.pricing import PriceBook
from pipelines.providers import assemblyai, deepgram, elevenlabs
from tests.fakes import FakeProviders
from tests.fakes.drive import collect_audio, pcm_pattern, push_pcm
from tests.test_metering import ListSink

SPEC = AgentSpec(
    id="a", name="a", system_prompt="", stt_provider="deepgram", llm_provider="gemini", tts_provider="elevenlabs"
)
AUDIO = pcm_pattern(("silence", 0.2), ("speech", 0.6), ("silence", 0.6), ("speech", 0.5), ("silence", 0.5))
# USD per character in pricing.yaml
BOOK_RATES = {"elevenlabs": Decimal("0.00005"), "resemble": Decimal("0.0003"), "google": Decimal("0.000016")}
BUILDERS = {"deepgram": deepgram.stt, "assemblyai": assemblyai.stt, "elevenlabs_stt": elevenlabs.stt}


@pytest.fixture
async def fakes():
    async with FakeProviders(api_key="k") as f:
        yield f


def config(fakes: FakeProviders) -> ProvidersConfig:
    return ProvidersConfig(
        deepgram=ProviderCredentials("k", fakes.deepgram_url),
        assemblyai=ProviderCredentials("k", fakes.assemblyai_url),
        elevenlabs=ProviderCredentials("k", fakes.elevenlabs_base_url),
    )


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
        stream = build(fake, fakes, m).stream(
            conn_options=APIConnectOptions(max_retry=1, retry_interval=0.1, timeout=2.0)
        )
        push_pcm(stream, AUDIO)
        stream.end_input()
        with pytest.raises((APIError, aiohttp.ClientError)):
            async for _ in stream:
                pass
        await fakes.wait_for(lambda c: c[fake]["injected_failures"] >= 1, timeout=10)
        await stream.aclose()
        await asyncio.sleep(0)
        await m.close()
    assert fakes.counters()[fake]["audio_bytes"] == 0
    assert sink.events == []  # not even a zero-quantity event


# --- TTS: the characters each provider was sent ----------------------------------------------------

REPLY = "Sure, I can help with that. Your order shipped on Monday! It should arrive by Friday."
TTS_FAKES = {"elevenlabs": "elevenlabs_tts", "resemble": "resemble", "google": "google_tts"}


@pytest.fixture
def tts_config(fakes, monkeypatch) -> ProvidersConfig:
    monkeypatch.setenv("GRPC_DEFAULT_SSL_ROOTS_FILE_PATH", fakes.google_tts_ca_file)
    return ProvidersConfig(
        elevenlabs=ProviderCredentials("k", fakes.elevenlabs_base_url),
        resemble=ProviderCredentials(
            "k", fakes.resemble_base_url, {"websocket_url": fakes.resemble_ws_url, "voice_uuid": "v1"}
        ),
        google=ProviderCredentials(
            extra={"credentials_file": fakes.google_credentials_file, "tts_endpoint": fakes.google_tts_endpoint}
        ),
    )


def build_tts(provider: str, cfg: ProvidersConfig, m: CallMeter):
    wire = m.tts_wire(http_context.http_session(), provider=provider)
    plugin = registry.builder("tts", provider)(SPEC, cfg, wire=wire)  # type: ignore[call-arg]
    wire.model = plugin.model
    return plugin


def metered_characters(sink: ListSink, provider: str) -> int:
    events = [e for e in sink.events if e.event_type == "tts_characters"]
    assert {e.provider for e in events} == {provider}
    return int(sum(e.quantity for e in events))


@pytest.mark.parametrize("provider", ["elevenlabs", "resemble", "google"])
async def test_streamed_tts_characters_are_what_the_provider_received(fakes, tts_config, provider):
    sink = ListSink()
    m = meter(sink)
    async with http_context.open():
        plugin = build_tts(provider, tts_config, m)
        stream = plugin.stream()
        stream.push_text(REPLY)
        stream.end_input()
        frames = await collect_audio(stream)
        await plugin.aclose()
        await m.close()
    assert frames
    assert PriceBook.load().provider_key(plugin.provider) == provider  # the name LiveKit reports maps to our key
    received = fakes.counters()[TTS_FAKES[provider]]["characters"]
    assert metered_characters(sink, provider) == received > 0
    rate = BOOK_RATES[provider]
    assert sum(e.total_cost_nanos for e in sink.events) == int(received * rate * 10**9)
    assert all(e.model for e in sink.events)


@pytest.mark.parametrize("provider", ["elevenlabs", "resemble", "google"])
async def test_one_shot_tts_characters_are_what_the_provider_received(fakes, tts_config, provider):
    sink = ListSink()
    m = meter(sink)
    async with http_context.open():
        if provider == "resemble":
            tts_config = dataclasses.replace(
                tts_config, resemble=ProviderCredentials("k", fakes.resemble_base_url, {"voice_uuid": "v1"})
            )
        plugin = build_tts(provider, tts_config, m)
        frames = await collect_audio(plugin.synthesize(REPLY))
        await plugin.aclose()
        await m.close()
    assert frames
    assert metered_characters(sink, provider) == fakes.counters()[TTS_FAKES[provider]]["characters"] == len(REPLY)


async def test_a_refused_tts_request_costs_nothing(fakes, tts_config):
    fakes.fail("elevenlabs_tts", "reject")
    sink = ListSink()
    m = meter(sink)
    async with http_context.open():
        plugin = build_tts("elevenlabs", tts_config, m)
        with pytest.raises((APIError, aiohttp.ClientError)):
            await collect_audio(plugin.synthesize(REPLY, conn_options=APIConnectOptions(max_retry=0)))
        await plugin.aclose()
        await m.close()
    assert fakes.counters()["elevenlabs_tts"]["injected_failures"] == 1
    assert sink.events == []
