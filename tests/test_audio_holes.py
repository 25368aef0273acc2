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


class _Session:
    def __init__(self, audio):
        self.output = type("Out", (), {"audio": audio})()


def test_the_source_is_found_down_the_chain_and_its_frames_counted():
    async def run() -> AudioHoles:
        source = rtc.AudioSource(24_000, 1, queue_size_ms=200)
        try:
            session = _Session(_Output(None, _Output(source)))  # a wrapper (e.g. the recording's tap), then RoomIO's
            assert audio_source(session) is source
            ticks = iter([0.0, 0.0, 0.3, 0.3])  # the second frame comes 300 ms after the first: the queue ran dry
            holes = watch(session, clock=lambda: next(ticks))
            assert holes is not None
            frame = rtc.AudioFrame(b"\0\0" * 480, 24_000, 1, 480)
            await source.capture_frame(frame)
            await source.capture_frame(frame)
            return holes
        finally:
            await source.aclose()

    holes = asyncio.run(run())
    assert holes.holes == 1 and abs(holes.audio_s - 0.04) < 1e-9
    assert watch(_Session(_Output(None, None))) is None
