"""A refused STT connection: a few attempts with growing waits, one log line per failed attempt, one traceback for
the failure, then nothing more. A real AgentSession built by the product's builder, the real Deepgram plugin aimed at
a loopback port nobody listens on, the caller's audio a stream of silence."""

from __future__ import annotations

import asyncio
import itertools
import logging
import socket
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest
from livekit import rtc
from livekit.agents import APIConnectionError, APIConnectOptions
from livekit.agents.utils import http_context
from livekit.agents.voice import io
from livekit.plugins import silero

from pipelines.builder import TurnDefaults, VoiceAgent, build_pipeline, build_session
from pipelines.config import AgentSpec, ProviderCredentials, ProvidersConfig
from pipelines.providers import deepgram as product_deepgram
from tests.fakes import FakeProviders

SPEC = AgentSpec(
    id="a", name="a", system_prompt="", stt_provider="deepgram", llm_provider="gemini", tts_provider="elevenlabs"
)


class Silence(io.AudioInput):
    """The caller's microphone, live and quiet: 10 ms frames in real time."""

    def __init__(self) -> None:
        super().__init__(label="silence")

    async def __anext__(self) -> rtc.AudioFrame:
        await asyncio.sleep(0.01)
        return rtc.AudioFrame(b"\0" * 320, 16000, 1, 160)


class CountingSession:
    """The STT plugin's HTTP session, counting its connection attempts."""

    def __init__(self, session: Any) -> None:
        self._session = session
        self.attempts = 0

    async def ws_connect(self, *args: Any, **kwargs: Any) -> Any:
        self.attempts += 1
        return await self._session.ws_connect(*args, **kwargs)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._session, name)


class Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@pytest.fixture
def refusing_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]  # closed on return: a connection there is refused


@pytest.fixture
def records() -> AsyncIterator[Records]:
    handler = Records()
    root = logging.getLogger()
    root.addHandler(handler)
    try:
        yield handler  # type: ignore[misc]
    finally:
        root.removeHandler(handler)


async def test_a_refused_stt_is_tried_three_times_with_backoff_and_logged_once_per_attempt(
    refusing_port: int, records: Records, monkeypatch: pytest.MonkeyPatch
) -> None:
    vad = silero.VAD.load()
    async with FakeProviders(api_key="k") as fakes:
        monkeypatch.setenv("GOOGLE_GEMINI_BASE_URL", fakes.gemini_base_url)
        cfg = ProvidersConfig(
            deepgram=ProviderCredentials("k", f"http://127.0.0.1:{refusing_port}/v1/listen"),
            google=ProviderCredentials("k", fakes.gemini_base_url),
            elevenlabs=ProviderCredentials("k", fakes.elevenlabs_base_url),
        )
        async with http_context.open():
            counting = CountingSession(http_context.http_session())
            pipeline = build_pipeline(SPEC, cfg, vad_model=vad, stt_kwargs=lambda _: {"http_session": counting})
            session = build_session(pipeline, vad_model=vad, defaults=TurnDefaults(mode="vad"))
            errors: list[tuple[float, bool]] = []
            session.on("error", lambda ev: errors.append((time.monotonic(), ev.error.recoverable)))
            session.input.audio = Silence()
            await session.start(VoiceAgent(SPEC))
            try:
                deadline = time.monotonic() + 20
                # until the pipeline gave up (or, unfixed, until it went on past its bound)
                while not any("STT failed for good" in r.getMessage() for r in records.records):
                    assert counting.attempts <= 3, f"{counting.attempts} connection attempts"
                    assert time.monotonic() < deadline, "the STT never gave up"
                    await asyncio.sleep(0.05)
            finally:
                await session.aclose()

    assert counting.attempts == 3
    assert [r for _, r in errors] == [True, True, False]  # two retried attempts, then the failure
    waits = [b[0] - a[0] for a, b in itertools.pairwise(errors)]
    assert 0.45 <= waits[0] < waits[1] and waits[1] >= 0.95, waits  # backoff, not LiveKit's retry at once
    stt_lines = [r for r in records.records if "speech" in r.getMessage() or "STT" in r.getMessage()]
    assert len(stt_lines) == 3, [r.getMessage() for r in stt_lines]  # one per failed attempt
    assert sum(1 for r in records.records if r.exc_info) == 1  # one traceback, for the failure


async def test_a_frame_pushed_after_the_stream_failed_for_good_is_dropped_not_raised(refusing_port: int) -> None:
    """LiveKit's input pump can push one more frame between the stream's failure and its own cancellation; the
    closed stream raising there was a second traceback of the one failure."""
    config = ProvidersConfig(deepgram=ProviderCredentials("k", f"http://127.0.0.1:{refusing_port}/v1/listen"))
    async with http_context.open():
        stream = product_deepgram.stt(SPEC, config).stream(conn_options=APIConnectOptions(max_retry=0, timeout=2))
        with pytest.raises(APIConnectionError):
            async for _ in stream:
                pass
        stream.push_frame(rtc.AudioFrame(b"\0\0" * 320, 16_000, 1, 320))  # raised RuntimeError: the stream is closed
        await stream.aclose()
