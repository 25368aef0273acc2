"""Holes in the agent's audio where the product makes it: the room's audio source running dry in a reply.

LiveKit's RoomIO forwards the agent's speech to an `rtc.AudioSource` with a 200 ms queue; when the next frame comes
after the queue ran out, the caller hears a hole. A machine short of CPU opens them (the forwarding task is late),
and so can the WebRTC path after the source or the caller's own device: counting them here says on which side of
the room a hole the caller heard opened. The job logs the count at the call's end (`agent audio: ... holes`), and
the bench's calls-per-core section counts them beside the holes its client hears (bench/cores.py).

A hole is the source dry for over 60 ms and at most 500 ms before its next frame, the bench client's own rule for a
gap in what it receives; longer silences are the pauses between replies, and so is the silence after a reply the
caller cut off (the output's buffer cleared), however short. Each hole says which reply it opened in, how far into
it, and whether the session paused its output across it (a pause for a caller who may be barging in). The source
is found on the session's output chain and its `capture_frame` wrapped on that one instance, with the output's
`pause` and `clear_buffer` (LiveKit keeps the source private to RoomIO's output:
`_ParticipantAudioOutput._audio_source`; a public hook there, or a playout-underrun counter on `rtc.AudioSource`,
would remove the wrapper). Nothing is counted when the source cannot be found."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from livekit import rtc

log = logging.getLogger("voxarena.job")

HOLE_MIN_S = 0.06
HOLE_MAX_S = 0.5


@dataclass
class AudioHoles:
    """What the source was given and where it ran dry; `before` and `after` frame each captured frame."""

    holes: int = 0
    longest_s: float = 0.0
    audio_s: float = 0.0
    # each hole: (which reply, from 1; seconds of the reply's audio given before it; how long the source was dry)
    where: list[tuple[int, float, float]] = field(default_factory=list)
    paused: int = 0  # of the holes, those that opened across a pause of the output (the session paused for the caller)
    _dry_at: float | None = None
    _pause_seen: bool = False
    _reply_s: float = 0.0  # the audio given since the last pause between replies
    _replies: int = 0

    def before(self, now: float) -> None:
        if self._dry_at is None or now - self._dry_at > HOLE_MAX_S:
            self._replies += 1
        if self._dry_at is not None:
            dry = now - self._dry_at
            if HOLE_MIN_S < dry <= HOLE_MAX_S:
                self.holes += 1
                self.longest_s = max(self.longest_s, dry)
                self.where.append((self._replies, self._reply_s, dry))
                self.paused += self._pause_seen
            elif dry > HOLE_MAX_S:
                self._reply_s = 0.0
        self._pause_seen = False

    def pause(self) -> None:
        self._pause_seen = True

    def cut_off(self) -> None:
        """The reply was cut off (the caller barged in): the next frame begins another reply, and the silence
        before it is the pause between two replies, not a hole in one."""
        self._dry_at = None
        self._reply_s = 0.0

    def after(self, now: float, queued_s: float, frame_s: float) -> None:
        """A frame handed in at `now`, the source then holding `queued_s` with it."""
        self._dry_at = now + queued_s  # when what the source holds has played out
        self.audio_s += frame_s
        self._reply_s += frame_s

    def report(self, session_id: str) -> None:
        if not self.audio_s:
            return
        level = logging.WARNING if self.holes else logging.INFO
        log.log(
            level,
            "session %s: agent audio: %.1f s to the room, %d holes at the audio source (dry %d-%d ms before its "
            "next frame; longest %d ms; %d across a pause of the output)%s%s",
            session_id,
            self.audio_s,
            self.holes,
            HOLE_MIN_S * 1000,
            HOLE_MAX_S * 1000,
            self.longest_s * 1000,
            self.paused,
            "".join(f"; {dry * 1000:.0f} ms after {at:.2f} s of reply {n}" for n, at, dry in self.where),
            "; frames came late (a machine short of CPU) or a reply paused for the caller" if self.holes else "",
        )


def room_output(session: Any) -> tuple[Any, rtc.AudioSource] | None:
    """LiveKit's RoomIO audio output at the end of the session's output chain, and its room audio source."""
    out = getattr(session.output, "audio", None)
    for _ in range(16):  # a chain of wrappers (the recording's tap, transcript sync) ends at the room's output
        if out is None:
            return None
        source = getattr(out, "_audio_source", None)
        if isinstance(source, rtc.AudioSource):
            return out, source
        out = getattr(out, "next_in_chain", None)
    return None


def audio_source(session: Any) -> rtc.AudioSource | None:
    """The room's audio source at the end of the session's audio output chain, if it is LiveKit's RoomIO one."""
    found = room_output(session)
    return None if found is None else found[1]


def watch(session: Any, clock: Callable[[], float] = time.monotonic) -> AudioHoles | None:
    """Counts the holes of the session's room audio from now on; None when its source is not found."""
    found = room_output(session)
    if found is None:
        log.warning("the room's audio source was not found on the session's output: its holes are not counted")
        return None
    output, source = found
    holes = AudioHoles()
    capture, pause, clear_buffer = source.capture_frame, output.pause, output.clear_buffer

    async def counted(frame: rtc.AudioFrame) -> None:
        # the source's state as the frame is handed in: a loop stalled while the capture is awaited still leaves
        # the source dry when what it held has played
        now, queued = clock(), source.queued_duration
        holes.before(now)
        await capture(frame)
        holes.after(now, queued + frame.duration, frame.duration)

    def paused() -> None:
        holes.pause()
        pause()

    def cleared() -> None:
        holes.cut_off()
        clear_buffer()

    source.capture_frame = counted  # type: ignore[method-assign]
    output.pause = paused
    output.clear_buffer = cleared
    return holes
