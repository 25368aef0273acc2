"""A call's recording: both sides on one timeline, stereo Ogg/Opus (the caller left, the agent right), written as the
call runs and finalized when it ends.

It is LiveKit's own `RecorderIO` (livekit-agents 1.8, ``voice/recorder_io``): it wraps the session's audio input
(the caller's track, as the STT hears it: channel 0) and output (the agent's audio, placed where it was played out:
channel 1) and appends to the file every 2.5 s from an encoder thread, so a crash loses at most those seconds.
The session's own ``record=`` option is not used: it writes into the job's temporary directory and, on a LiveKit
Cloud URL, uploads the audio with the session report; here nothing leaves the machine and the file is written to
the product's recording storage (core/recordings.py) from its first byte.

The recording's timeline starts at the session's ``startedAt``: the stretch before the agent's session was up (the
room joined, the caller awaited) is silence, so a moment of the recording is the same moment of the session."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import queue
import threading
import time
from decimal import Decimal
from functools import partial
from pathlib import Path

import av
import numpy as np
from livekit import rtc
from livekit.agents import AgentSession
from livekit.agents.voice.recorder_io import RecorderIO
from livekit.agents.voice.recorder_io.recorder_io import (
    FFMPEG_STRICT_LEVEL,
    MAX_RESAMPLER_LAG,
    _Captured,
    _EndRun,
    _Track,
    logger,
)

from core.recordings import FinalizeFailed, RecordingStorage, recording_key
from core.store import sessions as sessions_repo
from core.store import usage as usage_repo
from core.store.db import Store
from core.store.errors import NotFoundError
from core.store.timefmt import parse_iso
from pipelines.metering import QUANTUM, make_event
from pipelines.pricing import PriceBook

log = logging.getLogger("voxarena.job")


class _AlignedRecorder(RecorderIO):
    """LiveKit's recorder with its timeline's origin given (the session's start) instead of the moment it starts, and
    its file written as it goes. Its `start` is LiveKit's, but for `t0`; its `_encode_thread` is LiveKit's, but for
    the container's `flush_packets`; the rest is LiveKit's as it ships (livekit-agents 1.8.9)."""

    def __init__(self, *, agent_session: AgentSession, t0: float) -> None:
        super().__init__(agent_session=agent_session)
        self._origin = t0

    async def start(self, *, output_path: str | Path) -> None:
        async with self._lock:
            if self._started:
                return
            if not self._in_record or not self._out_record:
                raise RuntimeError("record_input() and record_output() must be called before start()")
            self._output_path = Path(output_path)
            self._started = True
            self._q = queue.Queue()
            self._close_fut = self._loop.create_future()
            self._t0 = min(self._origin, time.time())
            self._input_settled = time.time()
            self._write_atask = asyncio.create_task(self._write_task())
            threading.Thread(target=self._encode_thread, daemon=True, name="recorder_io_encode_thread").start()

    def tap(self, channel: int, frame: rtc.AudioFrame) -> None:
        """Audio the session does not carry (a warm transfer's connected legs) into the recording: the caller's side
        (0) or the other party's (1), timed by its arrival as LiveKit's own input is."""
        if not self.recording:
            return
        started_at = time.time() - frame.duration
        if channel == 0:
            self._input_settled = started_at + frame.duration
        self._put(_Captured(channel=channel, started_at=started_at, frame=frame))

    def _encode_thread(self) -> None:
        assert self._output_path is not None and self._t0 is not None
        tracks = [_Track(sample_rate=self._sample_rate, t0=self._t0) for _ in range(2)]
        cursor = 0

        # setup failures go through the same handler, so aclose() is never left waiting
        try:
            # prefer libopus; fallback to native opus only if necessary
            try:
                av.Codec("libopus", "w")
                codec_name = "libopus"
            except av.codec.codec.UnknownCodecError:
                logger.trace("libopus codec is not available, using opus")
                codec_name = "opus"

            self._output_path.parent.mkdir(parents=True, exist_ok=True)
            # flush_packets: each Ogg page reaches the file as it is made (about every second of audio), so a crash
            # loses at most the last write interval; without it FFmpeg's I/O buffer holds the first 256 KB (a call's
            # first ~40 s) until the file is closed
            with av.open(self._output_path, mode="w", format="ogg", options={"flush_packets": "1"}) as container:
                stream: av.AudioStream = container.add_stream(  # type: ignore
                    codec_name,
                    rate=self._sample_rate,
                    layout="stereo",
                )

                # native ffmpeg opus encoder is experimental
                if codec_name == "opus":
                    stream.codec_context.options["strict"] = FFMPEG_STRICT_LEVEL

                while (item := self._q.get()) is not None:
                    if isinstance(item, _Captured):
                        tracks[item.channel].push(item.started_at, item.frame)
                        continue

                    if isinstance(item, _EndRun):
                        tracks[item.channel].end_run()
                        continue

                    end = round((item.until - self._t0) * self._sample_rate)
                    held = end - round(MAX_RESAMPLER_LAG * self._sample_rate)
                    for track in tracks:
                        if (through := track.placed_through) is None:
                            continue
                        if through >= held:
                            end = min(end, through)
                        else:
                            # the source stopped delivering; place what it holds before
                            # the cursor moves past the run it belongs to
                            track.end_run()
                    if end <= cursor:
                        continue

                    block = np.stack([t.take(cursor, end) for t in tracks])
                    cursor = end

                    av_frame = av.AudioFrame.from_ndarray(block, format="fltp", layout="stereo")
                    av_frame.sample_rate = self._sample_rate
                    for packet in stream.encode(av_frame):
                        container.mux(packet)

                for packet in stream.encode(None):
                    container.mux(packet)
        except Exception:
            logger.exception("recorder encode thread failed; recording may be incomplete")
        finally:
            for label, track in zip(("input", "output"), tracks, strict=True):
                if track.dropped_samples:
                    logger.warning(
                        "recorder dropped audio that reached it after its place in the timeline had been written",
                        extra={"channel": label, "samples": track.dropped_samples},
                    )

            def resolve_close_fut() -> None:
                if not self._close_fut.done():
                    self._close_fut.set_result(None)

            with contextlib.suppress(RuntimeError):
                self._loop.call_soon_threadsafe(resolve_close_fut)


def ogg_duration_ms(path: Path) -> int:
    """The file's length from its last packet's end (no decoding)."""
    end = 0.0
    with av.open(str(path)) as container:
        stream = container.streams.audio[0]
        base = stream.time_base
        for packet in container.demux(stream):
            if packet.pts is None or base is None:
                continue
            end = max(end, float((packet.pts + (packet.duration or 0)) * base))
    return round(end * 1000)


class CallRecording:
    """One call's recording: `attach` when the session's audio is in place (the agent's `on_enter`, before its
    first word), `finish` once the call ended. Failures are logged and never end the call."""

    def __init__(self, store: Store, storage: RecordingStorage, *, owner_id: str, session_id: str) -> None:
        self.store = store
        self.storage = storage
        self.session_id = session_id
        self.key = recording_key(owner_id, session_id)
        self._recorder: _AlignedRecorder | None = None
        self._finished = False
        self.duration_ms: int | None = None  # once finished

    def tap(self, channel: int, frame: rtc.AudioFrame) -> None:
        """Audio carried outside the session into the recording (channel 0: the caller; 1: the agent's side, which
        after a warm transfer is the human the caller talks to)."""
        if self._recorder is not None and not self._finished:
            self._recorder.tap(channel, frame)

    async def attach(self, session: AgentSession) -> None:
        if self._recorder is not None or session.input.audio is None or session.output.audio is None:
            return
        sid = self.session_id
        try:
            row = await self.store.read(sessions_repo.get_row, sid)
            t0 = parse_iso(row["started_at"]).timestamp() if row.get("started_at") else time.time()
            recorder = _AlignedRecorder(agent_session=session, t0=t0)
            session.input.audio = recorder.record_input(session.input.audio)
            session.output.audio = recorder.record_output(session.output.audio)
            path = self.storage.writing_path(self.key)
            await self.store.write(sessions_repo.start_recording, sid, self.key)
            await recorder.start(output_path=path)
            self._recorder = recorder
            log.info("session %s: recording to %s", sid, path)
        except Exception:
            log.exception("session %s: the recording could not start; the call goes on unrecorded", sid)

    async def finish(self) -> tuple[int, int] | None:
        """Closes the file (its last seconds written), keeps it in the storage and stores its duration and size on
        the session; returns (duration ms, bytes), None when nothing was recorded. Once."""
        if self._recorder is None or self._finished:
            return None
        self._finished = True
        sid = self.session_id
        try:
            await self._recorder.aclose()
            path = self._recorder.output_path
            duration_ms = await asyncio.to_thread(ogg_duration_ms, path) if path is not None else 0
            try:
                size = await asyncio.to_thread(self.storage.finalize, self.key)
            except FinalizeFailed as e:  # kept locally: the session says why, and nothing counts it as stored
                error = str(e)
                log.error("session %s: the recording was not kept: %s", sid, error)
                await self.store.write(
                    lambda db: sessions_repo.fail_recording(db, sid, duration_ms=duration_ms, error=error)
                )
                return None
            await self.store.write(
                lambda db: sessions_repo.finish_recording(db, sid, duration_ms=duration_ms, size=size)
            )
            self.duration_ms = duration_ms
            log.info("session %s: recording finished, %.1f s, %d bytes", sid, duration_ms / 1000, size)
            return duration_ms, size
        except Exception:
            log.exception("session %s: the recording could not be finalized", sid)
            return None


async def keep_leftovers(store: Store, storage: RecordingStorage, book: PriceBook) -> int:
    """At a node's start, before its worker takes a call: the recordings its jobs wrote and did not keep (a job that
    crashed mid-call, an upload that failed) are kept now, each session given the file's length and size (and its
    error cleared), and its `storage_minutes` put in the ledger (the job meters only a recording it kept; the key
    `<session>/recording-kept` is this path's own, so a kept file is never counted twice). Returns how many were
    kept."""
    kept = 0
    for key in await asyncio.to_thread(storage.leftovers):
        sid = key.split("/", 1)[1].removesuffix(".ogg")
        try:
            row = await store.read(sessions_repo.get_row, sid)
        except NotFoundError:
            row = {}
        if row.get("recording_key") != key:  # not this store's, or the recording was deleted: never guessed at
            log.warning("recording %s: left in place at %s, no session names it", key, storage.writing_path(key))
            continue
        path = storage.writing_path(key)
        try:
            duration_ms = await asyncio.to_thread(ogg_duration_ms, path)
        except Exception:
            log.exception("recording %s: %s cannot be read, left in place", key, path)
            continue
        try:
            size = await asyncio.to_thread(storage.finalize, key)
        except FinalizeFailed as e:
            error = str(e)
            log.error("session %s: its recording is still not kept: %s", sid, error)
            await store.write(
                partial(sessions_repo.fail_recording, session_id=sid, duration_ms=duration_ms, error=error)
            )
            continue
        await store.write(partial(sessions_repo.finish_recording, session_id=sid, duration_ms=duration_ms, size=size))
        minutes = (Decimal(duration_ms) / Decimal(60_000)).quantize(QUANTUM)
        if minutes > 0:
            event = make_event(
                book,
                key=f"{sid}/recording-kept",
                owner_id=row["owner_id"],
                session_id=sid,
                agent_id=row.get("agent_id"),
                provider=storage.name,
                model=None,
                event_type="storage_minutes",
                quantity=minutes,
            )
            await store.write(usage_repo.record_events, [event.as_dict()])
        log.info(
            "session %s: its recording left by an earlier run kept now, %.1f s, %d bytes", sid, duration_ms / 1000, size
        )
        kept += 1
    return kept
