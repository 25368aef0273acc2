"""A LiveKit SDK (livekit.rtc) participant for e2e tests: publish a WAV as a microphone, measure what comes back.

All timestamps are `time.monotonic()` seconds in this process, so differences between them are latencies:

    client = AudioRoomClient(server.url, server.token("caller", room), identity="caller")
    await client.connect()
    sent = await client.publish_wav(speech_wav(), lead_silence=0.5, trail_silence=2.0)
    t = await client.wait_for_audio(after=sent.last_speech_at, timeout=10)
    latency = t - sent.last_speech_at            # end of our speech -> first audible reply frame
    await client.disconnect()

`publish_wav` paces frames in real time. Each frame's send time is when it reaches the head of the SDK's
audio queue (push time + queued duration), i.e. when libwebrtc takes it to encode and send.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from livekit import rtc

from worker.audio_holes import HOLE_MAX_S, HOLE_MIN_S

from .audio import SILENCE_DBFS, dbfs, read_wav


@dataclass
class PublishStats:
    """What publish_wav sent. Times are time.monotonic() seconds."""

    started_at: float = 0.0
    finished_at: float = 0.0
    frames_sent: int = 0
    speech_frames_sent: int = 0
    first_speech_at: float | None = None  # send time of the first non-silent input frame
    last_speech_at: float | None = None  # send time of the end of the last non-silent input frame
    duration_s: float = 0.0  # audio duration pushed, silence included
    # the source ran dry for over 60 ms between two of its frames (this process's loop late by more than the queue
    # held): what the room received has a hole there
    starved_s: float = 0.0
    starves: int = 0


@dataclass
class ReceivedFrame:
    at: float  # time.monotonic() when the SDK handed us the frame
    participant: str
    track_sid: str
    duration_s: float
    dbfs: float
    # seconds of this track's audio before this frame: the stream's own playout clock. libwebrtc's audio device
    # pulls every remote track's audio every 10 ms, silence or concealment included, so a gap on this clock is a
    # hole the caller hears, whereas a gap between arrival times (`at`) may be this process's loop coming late
    pos_s: float = 0.0


# inbound-rtp counters of a received audio track (WebRTC's own statistics): what its jitter buffer had to invent
INBOUND_AUDIO_COUNTERS = (
    "concealment_events",
    "concealed_samples",
    "silent_concealed_samples",
    "total_samples_received",
    "inserted_samples_for_deceleration",
    "removed_samples_for_acceleration",
    "jitter_buffer_emitted_count",
    "jitter_buffer_delay",  # seconds, summed over the emitted samples: / jitter_buffer_emitted_count is the mean
)


@dataclass
class ReceiveStats:
    frames: int = 0
    duration_s: float = 0.0
    nonsilent_frames: int = 0
    nonsilent_duration_s: float = 0.0
    by_participant: dict[str, float] = field(default_factory=dict)  # identity -> seconds received


class AudioRoomClient:
    """One room participant that can publish a WAV file and records every remote audio frame it receives."""

    def __init__(
        self,
        url: str,
        token: str,
        *,
        identity: str = "",
        sample_rate: int = 48000,
        silence_dbfs: float = SILENCE_DBFS,
        keep_frames: bool = True,
    ) -> None:
        self.url = url
        self.token = token
        self.identity = identity
        self.sample_rate = sample_rate
        self.silence_dbfs = silence_dbfs
        self.keep_frames = keep_frames
        self.room = rtc.Room()
        self.received: list[ReceivedFrame] = []  # every received frame (if keep_frames), in arrival order
        self.stats = ReceiveStats()
        self._nonsilent_times: list[float] = []
        self._new_audio = asyncio.Event()
        self._stream_tasks: set[asyncio.Task] = set()
        self._remote_tracks: dict[str, rtc.Track] = {}  # sid -> subscribed remote audio track
        self._source: rtc.AudioSource | None = None
        self._ahead_s = 0.0
        self._track: rtc.LocalAudioTrack | None = None
        self._publication: rtc.LocalTrackPublication | None = None
        self._connected = False
        self.room.on("track_subscribed", self._on_track_subscribed)

    # --- connection --------------------------------------------------------------------------------------

    def disconnected(self) -> asyncio.Future[float]:
        """A future of when (monotonic) the server disconnects this client: the room closed, or it was removed."""
        gone: asyncio.Future[float] = asyncio.get_running_loop().create_future()
        self.room.on("disconnected", lambda *_: gone.done() or gone.set_result(time.monotonic()))
        return gone

    async def connect(self, timeout: float = 15.0) -> None:
        try:
            await asyncio.wait_for(
                self.room.connect(self.url, self.token, rtc.RoomOptions(auto_subscribe=True)), timeout
            )
        except TimeoutError as e:
            raise TimeoutError(f"{self.identity or 'client'}: room.connect to {self.url} took over {timeout}s") from e
        self._connected = True

    async def disconnect(self, timeout: float = 10.0) -> None:
        for t in list(self._stream_tasks):
            t.cancel()
        for t in list(self._stream_tasks):
            with contextlib.suppress(BaseException):
                await asyncio.wait_for(t, 2)
        if self._source is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._source.aclose(), 2)
            self._source = None
        if self._connected:
            self._connected = False
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.room.disconnect(), timeout)

    async def __aenter__(self) -> AudioRoomClient:
        await self.connect()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.disconnect()

    async def wait_for_participant(
        self, identity: str | None = None, *, kind: int | None = None, timeout: float = 15.0
    ) -> rtc.RemoteParticipant:
        """A remote participant with this identity and/or kind (rtc.ParticipantKind.*), waiting if needed."""

        def match() -> rtc.RemoteParticipant | None:
            for p in self.room.remote_participants.values():
                if (identity is None or p.identity == identity) and (kind is None or p.kind == kind):
                    return p
            return None

        deadline = time.monotonic() + timeout
        while (p := match()) is None:
            if time.monotonic() >= deadline:
                have = [(p.identity, p.kind) for p in self.room.remote_participants.values()]
                raise TimeoutError(f"no participant identity={identity!r} kind={kind!r} after {timeout}s; have {have}")
            await asyncio.sleep(0.05)
        return p

    async def wait_for_agent(self, *, timeout: float = 45.0) -> str:
        """The agent's job is in the call: an agent participant whose audio this client receives. Its session has
        started then (LiveKit's RoomIO opens its input before it publishes its output), so it hears what is said
        from now on; a caller who speaks before the agent joined is not heard. Returns the agent's identity."""
        deadline = time.monotonic() + timeout
        while True:
            for p in self.room.remote_participants.values():
                if p.kind == rtc.ParticipantKind.PARTICIPANT_KIND_AGENT and self.stats.by_participant.get(p.identity):
                    return p.identity
            if time.monotonic() >= deadline:
                have = [(p.identity, p.kind) for p in self.room.remote_participants.values()]
                raise TimeoutError(
                    f"no agent's audio after {timeout}s; participants {have}, {self.stats.by_participant}"
                )
            await asyncio.sleep(0.05)

    async def wait_for_attribute(self, identity: str, key: str, value: str, *, timeout: float = 10.0) -> None:
        """Wait until remote participant `identity` has attribute key == value (e.g. sip.callStatus == active)."""
        deadline = time.monotonic() + timeout
        while True:
            p = next((x for x in self.room.remote_participants.values() if x.identity == identity), None)
            if p is not None and p.attributes.get(key) == value:
                return
            if time.monotonic() >= deadline:
                have = dict(p.attributes) if p is not None else None
                raise TimeoutError(f"{identity}.{key} != {value!r} after {timeout}s; attributes={have}")
            await asyncio.sleep(0.05)

    # --- publishing --------------------------------------------------------------------------------------

    async def _ensure_track(self, frame_ms: int, ahead_s: float = 0.0) -> rtc.AudioSource:
        if self._source is None:
            # A small queue keeps "pushed" close to "sent"; we pace in real time ourselves.
            self._ahead_s = ahead_s
            queue_ms = max(100, 4 * frame_ms) + round(ahead_s * 1000)
            self._source = rtc.AudioSource(self.sample_rate, 1, queue_size_ms=queue_ms)
            self._track = rtc.LocalAudioTrack.create_audio_track("microphone", self._source)
            opts = rtc.TrackPublishOptions(source=rtc.TrackSource.SOURCE_MICROPHONE)
            self._publication = await asyncio.wait_for(self.room.local_participant.publish_track(self._track, opts), 15)
        return self._source

    async def publish_microphone(self, frame_ms: int = 20, ahead_s: float = 0.0) -> None:
        """Publish the microphone track now, silent until `publish_wav` speaks on it, as LiveKit's web and mobile
        clients do as they join. livekit-server tells a room's others about a participant with no track only in its
        participant updates batched every 3 s: an agent that joins while this client is still joining would
        otherwise not see it for up to 3 s.

        `ahead_s`: how far `publish_wav` may run ahead of the wall clock (its source's queue grows by as much), so a
        stall of this process's loop shorter than that leaves no hole in what it sends, as a browser's or a phone's
        audio thread never does; 0 keeps what is queued at one frame."""
        await self._ensure_track(frame_ms, ahead_s)

    async def publish_wav(
        self, path: Path | str, *, lead_silence: float = 0.0, trail_silence: float = 0.0, frame_ms: int = 20
    ) -> PublishStats:
        """Publish a 16-bit mono WAV (resampled by the caller to `sample_rate`) as the microphone track, in
        real time in `frame_ms` frames (10 or 20), with optional leading/trailing silence. Returns when the
        last frame has been played out."""
        if frame_ms not in (10, 20):
            raise ValueError("frame_ms must be 10 or 20")
        samples, rate = read_wav(path)
        if rate != self.sample_rate:
            raise ValueError(f"{path} is {rate} Hz; this client publishes at {self.sample_rate} Hz")
        source = await self._ensure_track(frame_ms)
        n = rate * frame_ms // 1000
        lead = np.zeros(int(lead_silence * rate) // n * n, dtype=np.int16)
        trail = np.zeros(int(trail_silence * rate) // n * n, dtype=np.int16)
        body = np.concatenate([samples, np.zeros((-len(samples)) % n, dtype=np.int16)])
        all_samples = np.concatenate([lead, body, trail])
        frame_s = frame_ms / 1000.0

        stats = PublishStats(started_at=time.monotonic())
        t0 = stats.started_at
        dry_at: float | None = None
        for i in range(0, len(all_samples), n):
            chunk = all_samples[i : i + n]
            # real-time pacing: never run ahead of the wall clock by more than one frame (and `ahead_s`)
            delay = t0 + (i // n) * frame_s - time.monotonic() - frame_s - self._ahead_s
            if delay > 0:
                await asyncio.sleep(delay)
            now = time.monotonic()
            if dry_at is not None and (dry := now - dry_at) > HOLE_MIN_S:
                stats.starves += 1
                stats.starved_s += dry
            sent_at = now + source.queued_duration  # start of this frame on the wire
            dry_at = sent_at + frame_s  # as handed in: a stall while the capture is awaited is no excuse
            frame = rtc.AudioFrame(chunk.tobytes(), rate, 1, len(chunk))
            await source.capture_frame(frame)
            stats.frames_sent += 1
            if dbfs(chunk) > self.silence_dbfs:
                stats.speech_frames_sent += 1
                if stats.first_speech_at is None:
                    stats.first_speech_at = sent_at
                stats.last_speech_at = sent_at + frame_s
        await asyncio.wait_for(source.wait_for_playout(), 5 + len(all_samples) / rate)
        stats.finished_at = time.monotonic()
        stats.duration_s = len(all_samples) / rate
        return stats

    async def unpublish(self) -> None:
        if self._publication is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.room.local_participant.unpublish_track(self._publication.sid), 5)
            self._publication = None

    # --- receiving ---------------------------------------------------------------------------------------

    def _on_track_subscribed(
        self, track: rtc.Track, publication: rtc.RemoteTrackPublication, participant: rtc.RemoteParticipant
    ) -> None:
        if track.kind != rtc.TrackKind.KIND_AUDIO:
            return
        self._remote_tracks[track.sid] = track
        task = asyncio.ensure_future(self._consume(track, participant.identity))
        self._stream_tasks.add(task)
        task.add_done_callback(self._stream_tasks.discard)

    async def _consume(self, track: rtc.Track, identity: str) -> None:
        stream = rtc.AudioStream.from_track(track=track, sample_rate=self.sample_rate, num_channels=1)
        pos = 0.0
        try:
            async for ev in stream:
                now = time.monotonic()
                f = ev.frame
                dur = f.samples_per_channel / f.sample_rate
                level = dbfs(np.frombuffer(f.data, dtype=np.int16))
                self.stats.frames += 1
                self.stats.duration_s += dur
                self.stats.by_participant[identity] = self.stats.by_participant.get(identity, 0.0) + dur
                if level > self.silence_dbfs:
                    self.stats.nonsilent_frames += 1
                    self.stats.nonsilent_duration_s += dur
                    self._nonsilent_times.append(now)
                if self.keep_frames:
                    self.received.append(ReceivedFrame(now, identity, track.sid, dur, level, pos))
                pos += dur
                self._new_audio.set()
        finally:
            with contextlib.suppress(Exception):
                await stream.aclose()

    async def inbound_audio_stats(self) -> dict[str, float]:
        """INBOUND_AUDIO_COUNTERS and packets_lost summed over the remote audio tracks subscribed so far (call before
        disconnect)."""
        totals = dict.fromkeys((*INBOUND_AUDIO_COUNTERS, "packets_lost"), 0.0)
        for track in list(self._remote_tracks.values()):
            for st in await track.get_stats():
                if st.WhichOneof("stats") != "inbound_rtp":
                    continue
                for name in INBOUND_AUDIO_COUNTERS:
                    totals[name] += getattr(st.inbound_rtp.inbound, name)
                totals["packets_lost"] += max(0, st.inbound_rtp.received.packets_lost)
        return totals

    def playout_offsets(self) -> dict[str, float]:
        """Per track sid, the monotonic time of its playout clock's zero: the earliest any frame arrived relative to
        its place in the stream (min of `at - pos_s`). libwebrtc pulls every 10 ms on a schedule that makes up for
        late pulls, so `pos_s + offset` is when a frame was due to play out, however late this process's loop took
        it (the earliest frame sets the offset; a stall of this process only makes later frames arrive later)."""
        offsets: dict[str, float] = {}
        for f in self.received:
            lag = f.at - f.pos_s
            if lag < offsets.get(f.track_sid, float("inf")):
                offsets[f.track_sid] = lag
        return offsets

    def gaps(self, clock: str = "arrival") -> list[tuple[float, float]]:
        """Holes in the received audio: two consecutive non-silent frames of one track over HOLE_MIN_S and at most
        HOLE_MAX_S apart (the product's own rule at its audio source; longer silences are pauses between replies),
        as (start, end) on `clock`: "arrival" (when this process took the frames, `at`) or "playout" (the stream's
        own clock, `pos_s`: a hole in the audio itself, wherever it opened upstream, and none for a stall of this
        process). Needs keep_frames=True."""
        if clock not in ("arrival", "playout"):
            raise ValueError(f"unknown clock {clock!r}")
        last: dict[str, ReceivedFrame] = {}
        spans = []
        for f in self.received:
            if f.dbfs <= self.silence_dbfs:
                continue
            prev = last.get(f.track_sid)
            last[f.track_sid] = f
            if prev is not None:
                a, b = (prev.at, f.at) if clock == "arrival" else (prev.pos_s, f.pos_s)
                if HOLE_MIN_S < b - a <= HOLE_MAX_S:
                    spans.append((a, b))
        return spans

    def first_loud_frame_after(self, after: float) -> ReceivedFrame | None:
        """The first non-silent received frame that arrived at or after `after` (needs keep_frames=True)."""
        return next((f for f in self.received if f.at >= after and f.dbfs > self.silence_dbfs), None)

    def first_nonsilent_after(self, after: float = 0.0) -> float | None:
        """time.monotonic() of the first non-silent received frame at or after `after`, if any."""
        import bisect

        i = bisect.bisect_left(self._nonsilent_times, after)
        return self._nonsilent_times[i] if i < len(self._nonsilent_times) else None

    def nonsilent_duration_after(self, after: float = 0.0) -> float:
        return sum(f.duration_s for f in self.received if f.at >= after and f.dbfs > self.silence_dbfs)

    async def wait_for_quiet(self, *, quiet_s: float = 0.8, timeout: float = 20.0) -> float:
        """Wait until no non-silent audio has arrived for `quiet_s` (the agent finished speaking); returns the
        monotonic time of the last non-silent frame (0.0 if none yet)."""
        deadline = time.monotonic() + timeout
        while True:
            last = self._nonsilent_times[-1] if self._nonsilent_times else 0.0
            now = time.monotonic()
            if now - last >= quiet_s:
                return last
            if now > deadline:
                raise TimeoutError(
                    f"{self.identity or 'client'}: audio never went quiet for {quiet_s}s within {timeout}s"
                )
            await asyncio.sleep(min(0.1, quiet_s / 4))

    async def wait_for_audio(self, *, after: float = 0.0, min_nonsilent_s: float = 0.0, timeout: float = 10.0) -> float:
        """Wait for non-silent received audio after `after`; returns the monotonic time of its first frame.

        With `min_nonsilent_s`, also waits until that much non-silent audio arrived after `after`
        (needs keep_frames=True)."""
        deadline = time.monotonic() + timeout
        while True:
            first = self.first_nonsilent_after(after)
            if first is not None and (min_nonsilent_s <= 0 or self.nonsilent_duration_after(after) >= min_nonsilent_s):
                return first
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError(
                    f"{self.identity or 'client'}: no non-silent audio after t={after:.3f} within {timeout}s "
                    f"(received {self.stats.frames} frames / {self.stats.duration_s:.2f}s, "
                    f"{self.stats.nonsilent_duration_s:.2f}s non-silent, from {self.stats.by_participant})"
                )
            self._new_audio.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._new_audio.wait(), min(remaining, 0.5))
