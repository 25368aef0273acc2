"""Deepgram's endpoint arrives in the message that carries the turn's last final transcript: the product's stream
emits the end of speech first, so in `stt` turn detection LiveKit starts the reply's LLM request on the final
(preemptive generation) instead of after the turn's commit (pipelines/providers/deepgram.py)."""

from __future__ import annotations

import asyncio
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from livekit import rtc
from livekit.agents import stt
from livekit.agents.utils import http_context
from livekit.agents.voice import io
from livekit.plugins.deepgram import stt as deepgram_stt

from core.settings import Settings
from pipelines.builder import TurnDefaults, VoiceAgent, build_pipeline, build_session
from pipelines.config import AgentSpec, ProviderCredentials, ProvidersConfig
from pipelines.providers import deepgram as product_deepgram
from pipelines.turn_clock import TurnClock
from tests.fakes import FakeProviders
from tests.fakes.drive import final_texts, pcm_pattern, push_pcm
from worker import entrypoint

SPEC = AgentSpec(
    id="a", name="a", system_prompt="", stt_provider="deepgram", llm_provider="gemini", tts_provider="elevenlabs"
)
ONE_TURN = pcm_pattern(("silence", 0.2), ("speech", 0.6), ("silence", 0.8))


def _config(fakes: FakeProviders) -> ProvidersConfig:
    return ProvidersConfig(
        deepgram=ProviderCredentials("k", fakes.deepgram_url),
        google=ProviderCredentials("k", fakes.gemini_base_url),
        elevenlabs=ProviderCredentials("k", fakes.elevenlabs_base_url),
    )


async def test_the_end_of_speech_comes_before_the_final_it_came_with() -> None:
    async with FakeProviders(api_key="k") as fakes:
        fakes.update_script(stt_transcripts=["Hello there."])
        async with http_context.open():
            stream = product_deepgram.stt(SPEC, _config(fakes)).stream()
            push_pcm(stream, ONE_TURN)
            kinds: list[stt.SpeechEventType] = []
            events: list[stt.SpeechEvent] = []

            async def read() -> None:
                async for ev in stream:
                    events.append(ev)
                    kinds.append(ev.type)
                    if ev.type == stt.SpeechEventType.FINAL_TRANSCRIPT:
                        return

            await asyncio.wait_for(read(), 10)
            await stream.aclose()
    assert final_texts(events) == ["Hello there."]
    speech = [k for k in kinds if k != stt.SpeechEventType.INTERIM_TRANSCRIPT]
    assert speech == [
        stt.SpeechEventType.START_OF_SPEECH,
        stt.SpeechEventType.END_OF_SPEECH,
        stt.SpeechEventType.FINAL_TRANSCRIPT,
    ], kinds


def test_only_a_final_followed_by_its_end_of_speech_is_turned() -> None:
    kind = stt.SpeechEventType
    start, final, end = (
        stt.SpeechEvent(type=t) for t in (kind.START_OF_SPEECH, kind.FINAL_TRANSCRIPT, kind.END_OF_SPEECH)
    )
    events = product_deepgram._Events([start, final, end])
    assert events.end_of_speech_first() == [start, end, final]
    assert product_deepgram._Events([start, final]).end_of_speech_first() == [start, final]
    assert product_deepgram._Events([end, final]).end_of_speech_first() == [end, final]


def test_what_the_plugin_emitted_before_failing_on_a_message_still_goes_out(monkeypatch: pytest.MonkeyPatch) -> None:
    final = stt.SpeechEvent(type=stt.SpeechEventType.FINAL_TRANSCRIPT)

    def emits_then_fails(self: Any, data: dict[str, Any]) -> None:
        self._event_ch.send_nowait(final)
        raise KeyError("metadata")

    monkeypatch.setattr(deepgram_stt.SpeechStream, "_process_stream_event", emits_then_fails)
    stream = object.__new__(product_deepgram.SpeechStream)
    sent: list[stt.SpeechEvent] = []
    stream._event_ch = SimpleNamespace(send_nowait=sent.append)  # type: ignore[assignment]
    with pytest.raises(KeyError):
        stream._process_stream_event({"type": "Results", "speech_final": True})
    assert sent == [final] and stream._event_ch.send_nowait == sent.append  # type: ignore[attr-defined]


class Caller(io.AudioInput):
    """The caller's microphone: one utterance in 20 ms frames in real time, then silence."""

    def __init__(self, pcm: bytes) -> None:
        super().__init__(label="caller")
        step = 640
        self._frames = [pcm[i : i + step] for i in range(0, len(pcm), step)]

    async def __anext__(self) -> rtc.AudioFrame:
        await asyncio.sleep(0.02)
        chunk = self._frames.pop(0) if self._frames else b"\0" * 640
        return rtc.AudioFrame(chunk.ljust(640, b"\0"), 16000, 1, 320)


async def test_in_stt_turn_detection_the_llm_request_starts_on_the_final(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A turn in `stt` mode with preemptive generation on (the default): the reply's LLM request is made before the
    turn is committed, once, and the reply is made once (with the plugin's order it came after the commit)."""
    proc = SimpleNamespace(userdata={})
    entrypoint.prewarm(Settings(data_dir=tmp_path, worker_enabled=False), proc)  # type: ignore[arg-type]
    proc.userdata["store"].close()
    order: list[str] = []
    for mark in ("end_of_turn", "llm_request"):
        real = getattr(TurnClock, mark)

        def stamped(self: TurnClock, _real: Any = real, _mark: str = mark) -> None:
            order.append(_mark)
            _real(self)

        monkeypatch.setattr(TurnClock, mark, stamped)
    async with FakeProviders(api_key="k") as fakes:
        fakes.update_script(stt_transcripts=["What are your hours?"], llm_replies=["Nine to five."])
        monkeypatch.setenv("GOOGLE_GEMINI_BASE_URL", fakes.gemini_base_url)
        async with http_context.open():
            pipeline = build_pipeline(SPEC, _config(fakes), vad_model=proc.userdata["vad"])
            session = build_session(
                pipeline, vad_model=proc.userdata["vad"], defaults=TurnDefaults(mode="stt", min_delay=0.0)
            )
            session.input.audio = Caller(ONE_TURN)
            replied = asyncio.Event()

            def on_item(ev: Any) -> None:
                if getattr(ev.item, "role", None) == "assistant":
                    replied.set()

            session.on("conversation_item_added", on_item)
            await session.start(VoiceAgent(SPEC))
            try:
                await asyncio.wait_for(replied.wait(), 20)
            finally:
                await session.aclose()
        gemini = fakes.counters().get("gemini", {})
    assert order == ["llm_request", "end_of_turn"], order
    assert gemini.get("requests") == 1, gemini
