"""Deepgram streaming STT (`/v1/listen` websocket): LiveKit's plugin, sending the caller's audio in chunks of the
job's input frame rather than the plugin's fixed 50 ms.

The plugin re-chunks whatever it is given into 50 ms pieces before it sends them, so with 20 ms input frames the
audio still reaches Deepgram up to 50 ms after it was spoken, and Deepgram's endpointing can only hear the end of a
turn on a 50 ms grid: the final came 22 ms after the hand-written floor's (10 ms frames) at p50. Sent as the frames
come, with 20 ms frames, the STT hop is 12-17 ms shorter (bench/README.md, section 1); with the default 50 ms frames
nothing changes. `SpeechStream._run` is the plugin's own (livekit-plugins-deepgram 1.8.9) with the lines marked
`# voxarena` changed; tests/test_deepgram_chunks.py fails when the plugin's `_run` no longer matches it. What would
remove it: a chunk size option in the plugin.

Deepgram's endpoint (`speech_final`) comes in the message that carries the turn's last final transcript, and the
plugin emits that final before the end of speech. In `stt` turn detection LiveKit starts a preemptive generation on
a final only once the turn's speech has ended, so with the plugin's order it never did: the LLM request waited for
the turn's commit (~10 ms of the job's loop later, bench/README.md section 1). The stream emits the end of speech
first when one message carries both (the order LiveKit handles for providers that send them apart): the LLM
request starts on the final, as in the other turn detection modes. What would remove it: the plugin emitting the
end of speech before the final it ends.
"""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import aiohttp
from livekit import rtc
from livekit.agents import (
    DEFAULT_API_CONNECT_OPTIONS,
    APIConnectionError,
    APIConnectOptions,
    APIStatusError,
    utils,
)
from livekit.agents import stt as stt_base
from livekit.agents.types import NOT_GIVEN, NotGivenOr
from livekit.plugins import deepgram
from livekit.plugins.deepgram import stt as deepgram_stt
from livekit.plugins.deepgram.log import logger

from ..config import STT_SAMPLE_RATE, AgentSpec, ProvidersConfig, require_key

DEFAULT_MODEL = "nova-3"
PLUGIN_CHUNK_MS = 50
_PluginStream = deepgram_stt.SpeechStream


class _Events(list[stt_base.SpeechEvent]):
    """What the plugin emits for one message, collected to be sent in the order LiveKit acts on soonest."""

    def send_nowait(self, ev: stt_base.SpeechEvent) -> None:
        self.append(ev)

    def end_of_speech_first(self) -> list[stt_base.SpeechEvent]:
        """A final transcript followed by the end of speech it came with: the end of speech first."""
        evs = list(self)
        for i in range(len(evs) - 1):
            if (
                evs[i].type == stt_base.SpeechEventType.FINAL_TRANSCRIPT
                and evs[i + 1].type == stt_base.SpeechEventType.END_OF_SPEECH
            ):
                evs[i], evs[i + 1] = evs[i + 1], evs[i]
        return evs


class SpeechStream(deepgram_stt.SpeechStream):
    def __init__(self, *, chunk_ms: int, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._chunk_ms = chunk_ms

    def push_frame(self, frame: rtc.AudioFrame) -> None:
        # Failed for good (its retries spent, the session told): LiveKit's input pump may still hold a frame it
        # pushes before it is cancelled, and the closed stream's RuntimeError would be logged as a second
        # traceback of the one failure (seen under load). That frame has nowhere to go: dropped.
        if self._event_ch.closed:
            return
        super().push_frame(frame)

    def _process_stream_event(self, data: dict[str, Any]) -> None:
        if data.get("type") != "Results" or not data.get("speech_final"):
            super()._process_stream_event(data)
            return
        channel, events = self._event_ch, _Events()
        self._event_ch = events  # type: ignore[assignment]  # the plugin only sends on it here, synchronously
        try:
            super()._process_stream_event(data)
        finally:  # what it emitted before any failure goes out, as the plugin's own sends would have
            self._event_ch = channel
            for ev in events.end_of_speech_first():
                channel.send_nowait(ev)

    async def _run(self) -> None:
        closing_ws = False

        async def keepalive_task(ws: aiohttp.ClientWebSocketResponse) -> None:
            # if we want to keep the connection alive even if no audio is sent,
            # Deepgram expects a keepalive message.
            # https://developers.deepgram.com/reference/listen-live#stream-keepalive
            nonlocal closing_ws
            try:
                while True:
                    await ws.send_str(_PluginStream._KEEPALIVE_MSG)
                    await asyncio.sleep(5)
            except (aiohttp.ClientError, ConnectionError) as e:
                # when no audio is flowing this write is the only thing touching the
                # socket, so it is where a drop surfaces first. if the close is
                # expected just return; otherwise re-raise as a retryable APIError so
                # _main_task reconnects, symmetric with send_task and recv_task.
                if closing_ws or self._session.closed:
                    return
                raise APIConnectionError("deepgram connection closed unexpectedly") from e
            except Exception as e:
                logger.warning(f"Deepgram keepalive task exited: {e}")
                return

        @utils.log_exceptions(logger=logger)
        async def send_task(ws: aiohttp.ClientWebSocketResponse) -> None:
            nonlocal closing_ws

            # forward audio to deepgram in chunks of `chunk_ms` (the plugin: 50 ms)  # voxarena
            audio_bstream = utils.audio.AudioByteStream(
                sample_rate=self._opts.sample_rate,
                num_channels=self._opts.num_channels,
                samples_per_channel=self._opts.sample_rate * self._chunk_ms // 1000,  # voxarena
            )

            has_ended = False
            try:
                async for data in self._input_ch:
                    frames: list[rtc.AudioFrame] = []
                    if isinstance(data, rtc.AudioFrame):
                        frames.extend(audio_bstream.write(data.data.tobytes()))
                    elif isinstance(data, self._FlushSentinel):
                        frames.extend(audio_bstream.flush())
                        has_ended = True

                    for frame in frames:
                        self._audio_duration_collector.push(frame.duration)
                        await ws.send_bytes(frame.data.tobytes())

                    if has_ended:
                        self._audio_duration_collector.flush()
                        await ws.send_str(_PluginStream._FINALIZE_MSG)
                        has_ended = False

                # tell deepgram we are done sending audio/inputs
                closing_ws = True
                await ws.send_str(_PluginStream._CLOSE_MSG)
            except (aiohttp.ClientError, ConnectionError) as e:
                # a mid-write socket drop surfaces here as a raw connection error.
                # if the close is expected (aclose or the http session closing) just
                # return; otherwise re-raise as a retryable APIError so _main_task
                # reconnects, symmetric with recv_task.
                if closing_ws or self._session.closed:
                    return
                raise APIConnectionError("deepgram connection closed unexpectedly") from e

        @utils.log_exceptions(logger=logger)
        async def recv_task(ws: aiohttp.ClientWebSocketResponse) -> None:
            nonlocal closing_ws
            while True:
                msg = await ws.receive()
                if msg.type in (
                    aiohttp.WSMsgType.CLOSED,
                    aiohttp.WSMsgType.CLOSE,
                    aiohttp.WSMsgType.CLOSING,
                ):
                    # close is expected, see SpeechStream.aclose
                    # or when the agent session ends, the http session is closed
                    if closing_ws or self._session.closed:
                        return

                    # this will trigger a reconnection, see the _run loop
                    raise APIStatusError(
                        message="deepgram connection closed unexpectedly",
                        status_code=ws.close_code or -1,
                        body=f"{msg.data=} {msg.extra=}",
                    )

                if msg.type == aiohttp.WSMsgType.ERROR:
                    if closing_ws or self._session.closed:
                        return

                    # the heartbeat closes the socket when a ping goes unanswered,
                    # and that surfaces here rather than as a close frame.
                    # ws.exception() is the only place the reason survives.
                    raise APIConnectionError("deepgram connection lost") from ws.exception()

                if msg.type != aiohttp.WSMsgType.TEXT:
                    logger.warning("unexpected deepgram message type %s", msg.type)
                    continue

                try:
                    self._process_stream_event(json.loads(msg.data))
                except Exception:
                    logger.exception("failed to process deepgram message")

        ws: aiohttp.ClientWebSocketResponse | None = None

        while True:
            conn_start_time = 0.0
            try:
                ws = await self._connect_ws()
                conn_start_time = time.perf_counter()
                tasks = [
                    asyncio.create_task(send_task(ws)),
                    asyncio.create_task(recv_task(ws)),
                    asyncio.create_task(keepalive_task(ws)),
                ]
                tasks_group = asyncio.gather(*tasks)
                wait_reconnect_task = asyncio.create_task(self._reconnect_event.wait())
                try:
                    done, _ = await asyncio.wait(
                        (tasks_group, wait_reconnect_task),
                        return_when=asyncio.FIRST_COMPLETED,
                    )

                    # propagate exceptions from completed tasks
                    for task in done:
                        if task != wait_reconnect_task:
                            task.result()

                    if wait_reconnect_task not in done:
                        break

                    self._reconnect_event.clear()
                finally:
                    await utils.aio.gracefully_cancel(*tasks, wait_reconnect_task)
                    tasks_group.cancel()
                    tasks_group.exception()  # retrieve the exception
            finally:
                if ws is not None:
                    await ws.close()
                    # Deepgram bills WebSocket lifetime, not just audio
                    # frames pushed.  Emit the remainder between the
                    # connection's wall-clock lifetime and the frame
                    # durations we've already reported so usage reflects
                    # what the provider actually charges for.
                    if conn_start_time:
                        self._audio_duration_collector.flush()
                        lifetime = time.perf_counter() - conn_start_time
                        remainder = lifetime - self._reported_duration
                        if remainder > 0:
                            self._on_audio_duration_report(remainder)
                        self._reported_duration = 0.0


class STT(deepgram.STT):
    """The plugin's STT, whose streams send `chunk_ms` of audio at a time."""

    def __init__(self, *, chunk_ms: int = PLUGIN_CHUNK_MS, **kwargs: Any) -> None:
        if not 10 <= chunk_ms <= 1000:
            raise ValueError(f"a Deepgram chunk of {chunk_ms} ms")
        super().__init__(**kwargs)
        self._chunk_ms = chunk_ms

    def stream(  # as the plugin's, with the product's stream
        self,
        *,
        language: NotGivenOr[str] = NOT_GIVEN,
        conn_options: APIConnectOptions = DEFAULT_API_CONNECT_OPTIONS,
    ) -> SpeechStream:
        config = self._sanitize_options(language=language)
        stream = SpeechStream(
            chunk_ms=self._chunk_ms,
            stt=self,
            conn_options=conn_options,
            opts=config,
            api_key=self._api_key,
            http_session=self._ensure_session(),
            base_url=self._opts.endpoint_url,
        )
        self._streams.add(stream)
        return stream


def stt(agent: AgentSpec, cfg: ProvidersConfig, *, http_session: Any = None) -> stt_base.STT[Any]:
    key = require_key("deepgram", cfg.deepgram, "VOXARENA_DEEPGRAM_API_KEY")
    kwargs: dict[str, Any] = {"base_url": cfg.deepgram.base_url} if cfg.deepgram.base_url else {}
    return STT(
        chunk_ms=cfg.stt_chunk_ms,
        api_key=key,
        model=agent.stt_model or DEFAULT_MODEL,
        language=agent.language or "en-US",
        sample_rate=STT_SAMPLE_RATE,
        http_session=http_session,
        **kwargs,
    )
