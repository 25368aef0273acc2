"""The product's Deepgram stream (pipelines/providers/deepgram.py) sends the caller's audio in chunks of the job's input
frame, where LiveKit's plugin sends 50 ms at a time; otherwise it is the plugin's own code."""

from __future__ import annotations

import ast
import inspect
import re
import textwrap
from collections.abc import AsyncIterator

import pytest
from livekit.agents import stt
from livekit.agents.utils import http_context
from livekit.plugins import deepgram
from livekit.plugins.deepgram import stt as deepgram_stt

from core.pipeline import providers_config
from core.settings import Settings
from pipelines.config import AgentSpec, ProviderCredentials, ProvidersConfig
from pipelines.providers import deepgram as product_deepgram
from tests.fakes import FakeProviders
from tests.fakes.drive import collect_events, final_texts, pcm_pattern, push_pcm

SPEC = AgentSpec(
    id="a", name="a", system_prompt="", stt_provider="deepgram", llm_provider="gemini", tts_provider="elevenlabs"
)
# one utterance, 1.2 s in all: 60 frames of 20 ms, 24 chunks of 50
UTTERANCE = pcm_pattern(("silence", 0.2), ("speech", 0.6), ("silence", 0.4))


@pytest.fixture
async def fakes() -> AsyncIterator[FakeProviders]:
    async with FakeProviders() as running:
        yield running


def _normalized(function: object, changes: tuple[tuple[str, str], ...] = ()) -> str:
    source = textwrap.dedent(inspect.getsource(function))  # type: ignore[arg-type]
    for old, new in changes:
        assert re.search(old, source, re.M), f"the plugin's SpeechStream._run changed: {old!r} is gone"
        source = re.sub(old, new, source, flags=re.M)
    return ast.dump(ast.parse(source))


def test_the_stream_is_the_plugins_own_run_but_for_the_chunk_size() -> None:
    """Fails when an upgraded plugin's `_run` differs from the copy beyond the chunk size: merge the change into
    pipelines/providers/deepgram.py (or drop the copy, if the plugin lets the chunk be chosen)."""
    plugin_run = _normalized(
        deepgram_stt.SpeechStream._run,
        (
            (r"^ *samples_50ms = self\._opts\.sample_rate // 20\n", ""),
            (
                r"samples_per_channel=samples_50ms",
                "samples_per_channel=self._opts.sample_rate * self._chunk_ms // 1000",
            ),
            (r"\bSpeechStream\._", "_PluginStream._"),
        ),
    )
    assert _normalized(product_deepgram.SpeechStream._run) == plugin_run


async def _send(model: stt.STT, fakes: FakeProviders) -> tuple[list[str], int]:
    """(final transcripts, audio messages the fake received) of one utterance pushed in 20 ms frames."""
    before = fakes.counters()["deepgram"]
    async with http_context.open():
        stream = model.stream()
        push_pcm(stream, UTTERANCE, frame_ms=20)
        events = await collect_events(stream, 1)
        stream.end_input()
        after = await fakes.wait_for(lambda c: c["deepgram"]["closed"] == before["closed"] + 1)
        await stream.aclose()
    return final_texts(events), after["deepgram"]["audio_messages"] - before["audio_messages"]


async def test_20_ms_frames_are_sent_as_they_come_where_the_plugin_waits_for_50_ms(fakes: FakeProviders) -> None:
    fakes.update_script(stt_transcripts=["Hello product.", "Hello plugin."])
    config = ProvidersConfig(deepgram=ProviderCredentials(fakes.api_key, fakes.deepgram_url), stt_chunk_ms=20)
    product = product_deepgram.stt(SPEC, config)
    plugin = deepgram.STT(api_key=fakes.api_key, base_url=fakes.deepgram_url, sample_rate=16000)

    assert await _send(product, fakes) == (["Hello product."], len(UTTERANCE) // 640)
    # the plugin: the same audio in 50 ms pieces (the fake counts the bytes alike)
    assert await _send(plugin, fakes) == (["Hello plugin."], len(UTTERANCE) // 1600)
    assert fakes.counters()["deepgram"]["audio_bytes"] == 2 * len(UTTERANCE)


@pytest.mark.parametrize(("frame_ms", "chunk_ms"), [(20, 20), (50, 50), (100, 50), (10, 10)])
def test_the_chunk_is_the_input_frame_up_to_the_plugins_50_ms(frame_ms: int, chunk_ms: int) -> None:
    settings = Settings.from_env({"VOXARENA_AUDIO_INPUT_FRAME_MS": str(frame_ms)})
    assert providers_config(settings).stt_chunk_ms == chunk_ms
