"""The harness against a real livekit-server: SDK clients join a room and audio crosses it."""

from __future__ import annotations

import asyncio
import time
import uuid

import numpy as np
import pytest
from livekit import api, rtc

from tests.fakes.audio import voice_like_pcm
from tests.harness.audio import nonsilent_frame_indexes, read_wav, speech_wav
from tests.harness.client import AudioRoomClient
from tests.harness.livekit_server import LiveKitServer


def _room() -> str:
    return f"harness-{uuid.uuid4().hex[:8]}"


async def test_server_answers_the_room_service_api(livekit_server: LiveKitServer) -> None:
    room = _room()
    async with livekit_server.api() as lk:
        created = await lk.room.create_room(api.CreateRoomRequest(name=room, empty_timeout=30))
        listed = await lk.room.list_rooms(api.ListRoomsRequest(names=[room]))
        await lk.room.delete_room(api.DeleteRoomRequest(room=room))
    assert created.name == room
    assert [r.name for r in listed.rooms] == [room]


def test_espeak_speech_renders_with_speech_in_most_frames() -> None:
    samples, rate = read_wav(speech_wav(sample_rate=48000))
    assert rate == 48000
    assert len(samples) / rate > 2.0
    speech = nonsilent_frame_indexes(samples, rate, 20)
    assert len(speech) > 0.5 * (len(samples) / rate / 0.02)


async def test_speech_published_by_one_client_is_heard_by_another(livekit_server: LiveKitServer) -> None:
    room = _room()
    speaker = AudioRoomClient(livekit_server.url, livekit_server.token("speaker", room), identity="speaker")
    listener = AudioRoomClient(livekit_server.url, livekit_server.token("listener", room), identity="listener")
    try:
        await listener.connect()
        await speaker.connect()
        await listener.wait_for_participant("speaker", timeout=10)

        sent = await speaker.publish_wav(speech_wav(sample_rate=48000), lead_silence=0.5, trail_silence=1.0)
        assert sent.first_speech_at is not None and sent.last_speech_at is not None

        heard_at = await listener.wait_for_audio(after=sent.started_at, min_nonsilent_s=1.0, timeout=10)
    finally:
        await speaker.disconnect()
        await listener.disconnect()

    # the listener heard most of the speech, only from the speaker, starting after the speaker began talking
    speech_s = sent.speech_frames_sent * 0.02
    assert listener.stats.by_participant.keys() == {"speaker"}
    assert listener.stats.nonsilent_duration_s > 0.5 * speech_s, (listener.stats, sent)
    assert heard_at >= sent.first_speech_at - 0.05
    # mouth-to-ear over a local server is well under a second
    mouth_to_ear = heard_at - sent.first_speech_at
    print(
        f"\nmouth-to-ear {mouth_to_ear * 1000:.0f} ms; heard {listener.stats.nonsilent_duration_s:.2f}s of "
        f"{speech_s:.2f}s speech sent"
    )
    assert mouth_to_ear < 1.0, mouth_to_ear


async def test_listener_hears_silence_as_silence(livekit_server: LiveKitServer) -> None:
    """Leading silence arrives as silent frames, so the first non-silent frame marks speech, not the track start."""
    room = _room()
    speaker = AudioRoomClient(livekit_server.url, livekit_server.token("speaker", room), identity="speaker")
    listener = AudioRoomClient(livekit_server.url, livekit_server.token("listener", room), identity="listener")
    try:
        await listener.connect()
        await speaker.connect()
        sent = await speaker.publish_wav(speech_wav(sample_rate=48000), lead_silence=2.0, trail_silence=0.5)
        await listener.wait_for_audio(after=sent.started_at, timeout=10)
    finally:
        await speaker.disconnect()
        await listener.disconnect()

    first_received = min(f.at for f in listener.received)
    first_loud = listener.first_nonsilent_after(sent.started_at)
    assert first_loud is not None and sent.first_speech_at is not None
    assert first_loud - first_received > 1.0, "the 2 s of leading silence should arrive silent"
    assert abs(first_loud - sent.first_speech_at) < 1.0


async def test_participants_see_each_other_as_standard_kind(livekit_server: LiveKitServer) -> None:
    room = _room()
    a = AudioRoomClient(livekit_server.url, livekit_server.token("a", room), identity="a")
    b = AudioRoomClient(livekit_server.url, livekit_server.token("b", room), identity="b")
    try:
        await a.connect()
        await b.connect()
        p = await a.wait_for_participant("b", timeout=10)
        assert p.kind == rtc.ParticipantKind.PARTICIPANT_KIND_STANDARD
        async with livekit_server.api() as lk:
            res = await lk.room.list_participants(api.ListParticipantsRequest(room=room))
        assert sorted(x.identity for x in res.participants) == ["a", "b"]
    finally:
        await a.disconnect()
        await b.disconnect()


@pytest.mark.parametrize("frame_ms", [10, 20])
async def test_publish_paces_in_real_time(livekit_server: LiveKitServer, frame_ms: int) -> None:
    room = _room()
    c = AudioRoomClient(livekit_server.url, livekit_server.token("pacer", room), identity="pacer")
    try:
        await c.connect()
        sent = await c.publish_wav(speech_wav(sample_rate=48000), frame_ms=frame_ms)
    finally:
        await c.disconnect()
    took = sent.finished_at - sent.started_at
    assert sent.duration_s * 0.95 <= took <= sent.duration_s + 1.0, (took, sent.duration_s)


@pytest.mark.parametrize("ahead_s", [0.0, 0.4])
async def test_a_stall_of_the_speakers_loop_is_a_hole_in_its_speech_unless_it_sends_ahead(
    livekit_server: LiveKitServer, ahead_s: float
) -> None:
    """The bench's caller shares a core with the server and the fakes: a stall of its loop longer than its source
    holds is a hole in what it says (the STT hears two utterances). Sending ahead is what keeps its speech whole."""
    room = _room()
    c = AudioRoomClient(livekit_server.url, livekit_server.token("staller", room), identity="staller")
    try:
        await c.connect()
        await c.publish_microphone(ahead_s=ahead_s)

        async def stall() -> None:
            await asyncio.sleep(0.6)
            time.sleep(0.25)  # noqa: ASYNC251 (the stall itself: this loop runs nothing for 250 ms)

        staller = asyncio.ensure_future(stall())
        sent = await c.publish_wav(speech_wav(sample_rate=48000))
        await staller
    finally:
        await c.disconnect()
    if ahead_s:
        assert sent.starves == 0, sent
    else:
        assert sent.starves >= 1 and sent.starved_s > 0.1, sent


async def test_the_playout_clock_keeps_a_hole_in_the_audio_and_drops_a_stall_of_the_listener(
    livekit_server: LiveKitServer,
) -> None:
    """The bench's two clocks (bench/cores.py): a hole in the audio is one on both; a stall of the listening
    process is a gap only as the frames arrive, since libwebrtc pulled them on time."""
    room = _room()
    rate = 48000
    # 1 s of voice, a 200 ms hole, 2 s of voice, pushed through a 1 s queue: the speaker stays ahead of the stall
    audio = np.frombuffer(
        voice_like_pcm(1.0, rate) + bytes(int(0.2 * rate) * 2) + voice_like_pcm(2.0, rate), dtype=np.int16
    )
    speaker = rtc.Room()
    source = rtc.AudioSource(rate, 1, queue_size_ms=1000)
    listener = AudioRoomClient(livekit_server.url, livekit_server.token("listener", room), identity="listener")

    async def speak() -> None:
        step = rate // 100
        for i in range(0, len(audio), step):
            await source.capture_frame(rtc.AudioFrame(audio[i : i + step].tobytes(), rate, 1, step))
        await source.wait_for_playout()

    async def heard(seconds: float, timeout: float = 10.0) -> None:
        deadline = time.monotonic() + timeout
        while listener.stats.nonsilent_duration_s < seconds:
            assert time.monotonic() < deadline, f"heard {listener.stats.nonsilent_duration_s:.2f} s of {seconds}"
            await asyncio.sleep(0.01)

    try:
        await listener.connect()
        await speaker.connect(livekit_server.url, livekit_server.token("speaker", room))
        track = rtc.LocalAudioTrack.create_audio_track("voice", source)
        await speaker.local_participant.publish_track(track, rtc.TrackPublishOptions())
        speaking = asyncio.ensure_future(speak())
        await heard(1.6)  # past the hole
        # the listener's loop stalls (its frames wait in the SDK) while the speaker's queue plays on
        time.sleep(0.3)  # noqa: ASYNC251 (the stall under test)
        await heard(2.8)
        await asyncio.wait_for(speaking, 10)
    finally:
        await listener.disconnect()
        await speaker.disconnect()

    on_playout = listener.gaps("playout")
    assert len(on_playout) == 1 and 0.15 < on_playout[0][1] - on_playout[0][0] < 0.3, on_playout
    arrival = [b - a for a, b in listener.gaps("arrival")]
    assert any(0.15 < g < 0.3 for g in arrival) and any(g >= 0.28 for g in arrival), arrival
    # the frames the stall held back were due before they arrived
    offset = listener.playout_offsets()[listener.received[-1].track_sid]
    assert max(f.at - (f.pos_s + offset) for f in listener.received) >= 0.25
