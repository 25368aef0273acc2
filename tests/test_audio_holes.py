"""The agent's audio holes counted at the room's audio source (worker/audio_holes.py): the rule, on a clock the test
drives, and the source found on a real session's output chain."""

from __future__ import annotations

import asyncio

from livekit import rtc

from worker.audio_holes import AudioHoles, audio_source, watch

FRAME = 0.02


def _play(holes: AudioHoles, at: list[float], queued: float = 0.1) -> None:
    for t in at:
        holes.before(t)
        holes.after(t, queued, FRAME)


def test_a_reply_fed_in_time_has_no_hole_and_a_late_frame_mid_reply_is_one():
    steady = AudioHoles()
    _play(steady, [i * FRAME for i in range(50)])  # each frame while 100 ms are still queued
    assert (steady.holes, round(steady.audio_s, 2)) == (0, 1.0)

    late = AudioHoles()
    # frames 0..9, then the forwarder is 300 ms late: the 100 ms queued at frame 9 ran out 200 ms before frame 10
    _play(late, [i * FRAME for i in range(10)] + [9 * FRAME + 0.3 + i * FRAME for i in range(10)])
    assert late.holes == 1 and abs(late.longest_s - 0.2) < 1e-9


def test_a_hole_says_where_in_the_reply_it_opened_and_whether_the_output_was_paused_across_it():
    holes = AudioHoles()
    _play(holes, [0.0], queued=0.0)  # a reply before: its pause to the next is no hole and starts a new reply
    _play(holes, [3.0 + i * FRAME for i in range(5)], queued=0.0)
    holes.pause()  # the session paused its output for the caller 100 ms into the reply; it resumed 320 ms on
    _play(holes, [3.4, 3.42], queued=0.0)
    _play(holes, [3.8], queued=0.0)  # then a late frame, no pause
    assert holes.holes == 2 and holes.paused == 1
    assert [(n, round(at, 2), round(dry, 2)) for n, at, dry in holes.where] == [(2, 0.1, 0.32), (2, 0.14, 0.38)]


def test_the_silence_after_a_reply_the_caller_cut_off_is_no_hole():
    holes = AudioHoles()
    _play(holes, [i * FRAME for i in range(3)], queued=0.0)  # 60 ms of a reply, then the caller barges in
    holes.cut_off()
    _play(holes, [0.4 + i * FRAME for i in range(5)], queued=0.0)  # the next reply 340 ms after the last frame ran out
    assert holes.holes == 0 and holes._replies == 2
    _play(holes, [0.8], queued=0.0)  # a late frame in that reply is still one
    assert holes.holes == 1 and holes.where[0][0] == 2


def test_a_dry_spell_at_the_edges_of_the_rule_and_the_pause_between_replies_are_no_holes():
    for gap, counted in ((0.06, 0), (0.0601, 1), (0.5, 1), (0.51, 0), (3.0, 0)):
        holes = AudioHoles()
        _play(holes, [0.0], queued=0.0)
        _play(holes, [gap], queued=0.0)
        assert holes.holes == counted, gap


class _Output:
    def __init__(self, source=None, next_in_chain=None):
        self._audio_source = source
        self.next_in_chain = next_in_chain
        self.pauses = 0
        self.clears = 0

    def pause(self):
        self.pauses += 1

    def clear_buffer(self):
        self.clears += 1


class _Session:
    def __init__(self, audio):
        self.output = type("Out", (), {"audio": audio})()


def test_the_source_is_found_down_the_chain_and_its_frames_counted():
    async def run() -> AudioHoles:
        source = rtc.AudioSource(24_000, 1, queue_size_ms=200)
        try:
            session = _Session(_Output(None, _Output(source)))  # a wrapper (e.g. the recording's tap), then RoomIO's
            assert audio_source(session) is source
            ticks = iter([0.0, 0.3])  # the second frame comes 300 ms after the first: the queue ran dry
            holes = watch(session, clock=lambda: next(ticks))
            assert holes is not None
            frame = rtc.AudioFrame(b"\0\0" * 480, 24_000, 1, 480)
            await source.capture_frame(frame)
            room_output = session.output.audio.next_in_chain
            room_output.pause()  # the output's pause is seen, and still pauses it
            assert room_output.pauses == 1
            await source.capture_frame(frame)
            room_output.clear_buffer()  # so is its clear (a reply cut off), which still clears it
            assert room_output.clears == 1 and holes._dry_at is None
            return holes
        finally:
            await source.aclose()

    holes = asyncio.run(run())
    assert holes.holes == 1 and holes.paused == 1 and abs(holes.audio_s - 0.04) < 1e-9
    assert watch(_Session(_Output(None, None))) is None


def test_a_stall_while_a_capture_is_awaited_is_still_a_hole():
    async def run() -> AudioHoles:
        source = rtc.AudioSource(24_000, 1, queue_size_ms=200)
        now = [0.0]
        capture = source.capture_frame

        async def stalling(frame: rtc.AudioFrame) -> None:
            await capture(frame)
            now[0] += 0.3  # the loop ran nothing else for 300 ms while this capture was awaited

        source.capture_frame = stalling  # type: ignore[method-assign]
        try:
            holes = watch(_Session(_Output(source)), clock=lambda: now[0])
            assert holes is not None
            frame = rtc.AudioFrame(b"\0\0" * 480, 24_000, 1, 480)
            await source.capture_frame(frame)  # handed in at 0.0 to an empty source: dry at 0.02
            await source.capture_frame(frame)  # the next one handed in only at 0.3
            return holes
        finally:
            await source.aclose()

    holes = asyncio.run(run())
    assert holes.holes == 1 and abs(holes.longest_s - 0.28) < 1e-9
