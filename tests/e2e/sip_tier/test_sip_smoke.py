"""The SIP tier itself, without product code: CreateSIPParticipant through real livekit-server + livekit-sip to a
sipp callee, for each outcome a dialled number can have."""

from __future__ import annotations

import asyncio
import time
import uuid

import pytest
from google.protobuf.duration_pb2 import Duration
from livekit import api

from tests.harness.audio import speech_ulaw_wav, speech_wav
from tests.harness.client import AudioRoomClient
from tests.harness.sip import CALLEE_NUMBER, SipStack, eventually


def _room() -> str:
    return f"sip-{uuid.uuid4().hex[:8]}"


def _dial(stack: SipStack, room: str, *, ringing_timeout_s: int = 10) -> api.CreateSIPParticipantRequest:
    return api.CreateSIPParticipantRequest(
        sip_trunk_id=stack.trunk_id,
        sip_call_to=CALLEE_NUMBER,
        room_name=room,
        participant_identity="callee",
        participant_name="sipp callee",
        wait_until_answered=True,
        ringing_timeout=Duration(seconds=ringing_timeout_s),
    )


async def _participants(lk: api.LiveKitAPI, room: str) -> list[api.ParticipantInfo]:
    try:
        return list((await lk.room.list_participants(api.ListParticipantsRequest(room=room))).participants)
    except api.TwirpError as e:
        if e.code == "not_found":  # the room is gone with its last participant
            return []
        raise


async def test_an_answered_call_joins_the_room_as_a_sip_participant_carries_audio_both_ways_and_removal_sends_bye(
    sip_stack: SipStack, sip_callee
):
    callee = sip_callee("uas_answer.xml", answer_after_ms=500, play=speech_ulaw_wav())
    room = _room()
    async with sip_stack.api() as lk:
        t0 = time.monotonic()
        info = await lk.sip.create_sip_participant(_dial(sip_stack, room))
        answered_after = time.monotonic() - t0
        assert info.participant_identity == "callee" and info.room_name == room and info.sip_call_id
        assert answered_after >= 0.5  # it waited for the answer

        (p,) = [p for p in await _participants(lk, room) if p.identity == "callee"]
        assert p.kind == api.ParticipantInfo.Kind.SIP
        assert p.attributes["sip.callStatus"] == "active"
        assert p.attributes["sip.phoneNumber"] == CALLEE_NUMBER
        assert p.attributes["sip.trunkID"] == sip_stack.trunk_id
        await eventually(lambda: callee.received("ACK"), timeout=5, what="ACK at the callee")  # sipp's log lags
        assert callee.received("INVITE") and not callee.received("BYE")

        # Media both ways: a room participant speaks, the callee hears it; the callee's speech reaches the room.
        token = sip_stack.livekit.token("caller", room)
        async with AudioRoomClient(sip_stack.url, token, identity="caller") as caller:
            await caller.wait_for_participant("callee", timeout=10)
            publishing = asyncio.create_task(caller.publish_wav(speech_wav(), lead_silence=0.2))
            try:
                heard = await eventually(
                    lambda: callee.rtp.snapshot().nonsilent_packets >= 25 and callee.rtp.snapshot(),
                    timeout=15,
                    what="non-silent RTP at the callee (0.5 s of speech)",
                )
                assert heard.payload_types == {0}  # PCMU, the only codec the callee offered
                await eventually(
                    lambda: (
                        caller.stats.by_participant.get("callee", 0) > 0 and caller.stats.nonsilent_duration_s >= 0.5
                    ),
                    timeout=15,
                    what="the callee's speech in the room",
                )
            finally:
                publishing.cancel()
                await asyncio.gather(publishing, return_exceptions=True)

        await lk.room.remove_participant(api.RoomParticipantIdentity(room=room, identity="callee"))
    await eventually(lambda: callee.received("BYE"), timeout=10, what="BYE at the callee")
    assert await asyncio.to_thread(callee.wait_exit, timeout=10) == 0, callee.describe()


async def test_a_busy_callee_fails_the_call_with_sip_status_486(sip_stack: SipStack, sip_callee):
    callee = sip_callee("uas_busy.xml", answer_after_ms=300)
    room = _room()
    async with sip_stack.api() as lk:
        with pytest.raises(api.SipCallError) as err:
            await lk.sip.create_sip_participant(_dial(sip_stack, room))
        assert err.value.sip_status_code == 486
        assert err.value.code == "resource_exhausted" and err.value.status == 429
        assert [p for p in await _participants(lk, room) if p.identity == "callee"] == []
    assert await asyncio.to_thread(callee.wait_exit, timeout=10) == 0, callee.describe()
    assert callee.sent("486") and callee.received("ACK")


async def test_a_declining_callee_fails_the_call_with_sip_status_603(sip_stack: SipStack, sip_callee):
    callee = sip_callee("uas_decline.xml", answer_after_ms=300)
    room = _room()
    async with sip_stack.api() as lk:
        with pytest.raises(api.SipCallError) as err:
            await lk.sip.create_sip_participant(_dial(sip_stack, room))
        assert err.value.sip_status_code == 603
        assert err.value.code == "permission_denied" and err.value.status == 403
        assert [p for p in await _participants(lk, room) if p.identity == "callee"] == []
    assert await asyncio.to_thread(callee.wait_exit, timeout=10) == 0, callee.describe()
    assert callee.sent("603") and callee.received("ACK")


async def test_a_callee_that_never_answers_is_cancelled_at_the_ringing_timeout(sip_stack: SipStack, sip_callee):
    callee = sip_callee("uas_ring.xml")
    room = _room()
    async with sip_stack.api() as lk:
        t0 = time.monotonic()
        with pytest.raises(api.TwirpError) as err:
            await lk.sip.create_sip_participant(_dial(sip_stack, room, ringing_timeout_s=3))
        waited = time.monotonic() - t0
        assert err.value.code == "canceled" and err.value.status == 408
        assert "sip_status_code" not in err.value.metadata  # a no-answer carries no SIP status
        assert 3.0 <= waited < 10.0
        assert [p for p in await _participants(lk, room) if p.identity == "callee"] == []
    assert await asyncio.to_thread(callee.wait_exit, timeout=10) == 0, callee.describe()
    assert callee.received("CANCEL")


async def test_a_callee_that_hangs_up_sends_bye_and_the_sip_participant_leaves(sip_stack: SipStack, sip_callee):
    callee = sip_callee("uas_answer_hangup.xml", answer_after_ms=2000)
    room = _room()
    async with sip_stack.api() as lk:
        await lk.sip.create_sip_participant(_dial(sip_stack, room))
        assert [p.kind for p in await _participants(lk, room) if p.identity == "callee"] == [
            api.ParticipantInfo.Kind.SIP
        ]
        assert await asyncio.to_thread(callee.wait_exit, timeout=15) == 0, callee.describe()
        assert callee.sent("BYE") and callee.received("200")

        async def gone() -> bool:
            return not [p for p in await _participants(lk, room) if p.identity == "callee"]

        deadline = time.monotonic() + 10
        while not await gone():
            assert time.monotonic() < deadline, "the SIP participant stayed in the room after the callee's BYE"
            await asyncio.sleep(0.1)


async def test_a_call_a_test_leaves_up_is_hung_up_at_its_own_callee_not_the_next_tests(sip_stack: SipStack):
    """The sip_callee fixture's teardown (SipStack.hang_up_all): every callee listens on the trunk's one address, and
    a one-call sipp that gets the BYE of a call it does not know aborts it and exits failed."""
    first = sip_stack.start_callee("uas_answer.xml", answer_after_ms=100)
    room = _room()
    async with sip_stack.api() as lk:
        await lk.sip.create_sip_participant(_dial(sip_stack, room))
    # what the fixture does when a test ends with the call still up: the BYE reaches the callee that took the call
    assert await asyncio.to_thread(sip_stack.hang_up_all) == [room]
    assert await asyncio.to_thread(first.wait_exit, timeout=10) == 0, first.describe()
    assert first.received("BYE")
    # without it, the late BYE reaches the next callee: a stray BYE aborts a one-call sipp (what hang_up_all spares)
    second = sip_stack.start_callee("uas_answer.xml", answer_after_ms=100)
    try:
        async with sip_stack.api() as lk:
            room = _room()
            await lk.sip.create_sip_participant(_dial(sip_stack, room))
            sip_stack.stop_callee()  # the callee goes first, as the fixture used to: livekit-sip's BYE finds nobody
            third = sip_stack.start_callee("uas_answer.xml", answer_after_ms=100)
            await lk.room.delete_room(api.DeleteRoomRequest(room=room))
        # the BYE lands on the third callee, which never took the call, and ends it before any call was placed
        assert await asyncio.to_thread(third.wait_exit, timeout=15) != 0, third.describe()
        assert "unexpected BYE" in third.errors_path.read_text(errors="replace"), third.describe()
    finally:
        sip_stack.stop_callee()
    assert second.process.proc.poll() is not None


def test_a_callee_whose_port_another_process_holds_says_who_and_starts_once_it_is_free(sip_stack: SipStack):
    """sipp exits at once when the trunk's port is taken ("Unable to bind main socket"); a check that only sees
    something bound there passed, and the test went on against no callee. The callee now waits for its own socket,
    names the holder, and starts again once the port is free."""
    import socket

    from tests.harness.procs import HarnessError

    ip, port = sip_stack.callee_ip, sip_stack.callee_port
    holder = _hold_udp(ip, port, seconds=60)
    try:
        with pytest.raises(HarnessError) as failed:
            sip_stack.start_callee("uas_answer.xml")
        held = str(failed.value).partition(f"holding {ip}:{port}/udp: ")[2]
        assert held.startswith(("['", '["')) and held[2:].startswith(f"{holder.pid} "), held
    finally:
        holder.kill()
        holder.wait()
    late = _hold_udp(ip, port, seconds=1)  # held for the first attempt only: the second starts
    try:
        callee = sip_stack.start_callee("uas_answer.xml")
        assert callee.process.alive()
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s, pytest.raises(OSError):
            s.bind((ip, port))  # sipp's now
    finally:
        late.wait(timeout=10)
        sip_stack.stop_callee()


def _hold_udp(ip: str, port: int, *, seconds: float):
    """Another process bound to ip:port/udp for `seconds`; returned once it is bound."""
    import subprocess
    import sys

    hold = (
        "import socket,sys,time; s=socket.socket(socket.AF_INET,socket.SOCK_DGRAM); "
        "s.bind((sys.argv[1],int(sys.argv[2]))); print('bound',flush=True); time.sleep(float(sys.argv[3]))"
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", hold, ip, str(port), str(seconds)], stdout=subprocess.PIPE, text=True
    )
    assert proc.stdout is not None and proc.stdout.readline().strip() == "bound"
    return proc
