"""Recorded phone calls through real SIP. Inbound: sipp calls a tenant's number, its recording agent answers, and the
file is a stereo Ogg/Opus as long as the session, with the caller (sipp's looping speech) on the left channel and
the agent's greeting on the right. Outbound, with voicemail detection: the agent dials a sipp callee playing a
voicemail greeting, leaves its message after the beep, and the recording holds the greeting on the callee's side and
the message, after it, on the agent's."""

from __future__ import annotations

import asyncio
import json
import subprocess
from datetime import datetime
from pathlib import Path

import numpy as np

from tests.e2e.sip_tier.test_inbound_calls import _register, _wait, sip_caller  # noqa: F401 (a fixture)
from tests.e2e.sip_tier.test_outbound_calls import _place
from tests.e2e.sip_tier.test_voicemail_phone import MESSAGE, _agent, _ended, answering  # noqa: F401 (a fixture)
from tests.harness.audio import speech_ulaw_wav
from tests.harness.greetings import spoken_seconds

GREETING = "Thank you for calling the front desk, how can I help?"
NOTICE = "This call is recorded."
RATE = 16_000
WINDOW = 0.1  # seconds


def _epoch(iso: str) -> float:
    return datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp()


def _probe(path) -> tuple[dict, float]:
    """The file's one audio stream and its duration, as ffprobe reads them."""
    probe = json.loads(
        subprocess.run(
            ["ffprobe", "-v", "error", "-show_streams", "-show_format", "-of", "json", str(path)],
            check=True,
            capture_output=True,
            text=True,
        ).stdout
    )
    (stream,) = probe["streams"]
    return stream, float(probe["format"]["duration"])


def _channels(path) -> tuple[np.ndarray, np.ndarray]:
    """The caller's (left) and the agent's (right) channels, decoded by ffmpeg at RATE."""
    raw = subprocess.run(
        ["ffmpeg", "-v", "error", "-i", str(path), "-f", "f32le", "-ac", "2", "-ar", str(RATE), "-"],
        check=True,
        capture_output=True,
    ).stdout
    left, right = np.frombuffer(raw, dtype=np.float32).reshape(-1, 2).T
    return left, right


def recorded_file(product, s: dict, what: str) -> Path:
    """The session's recording in the product's data dir: stereo Ogg/Opus, as long as the session (and as its
    `recordingDuration` says) within 0.5 s. Returns its path."""
    (path,) = (product.data_dir / "recordings").rglob(f"{s['id']}.ogg")
    stream, file_seconds = _probe(path)
    assert stream["codec_name"] == "opus" and stream["channels"] == 2, stream
    session_seconds = _epoch(s["endedAt"]) - _epoch(s["startedAt"])
    print(f"{what}: file {file_seconds:.3f} s, session {session_seconds:.3f} s")
    assert abs(file_seconds - session_seconds) < 0.5
    assert abs(s["recordingDuration"] - file_seconds) < 0.5, s["recordingDuration"]
    return path


def _windows_rms(x: np.ndarray) -> np.ndarray:
    n = int(WINDOW * RATE)
    usable = x[: len(x) // n * n].reshape(-1, n)
    return np.sqrt(np.mean(np.square(usable), axis=1))


async def test_a_recorded_phone_call_has_the_caller_left_and_the_agent_right_as_long_as_the_session(
    sip_product,
    sip_caller,  # noqa: F811
):
    product = sip_product
    number = "+15551230029"
    agent_id = await product.create_agent(firstMessage=GREETING, recordingEnabled=True, recordingNotice=NOTICE)
    await _register(product, number, agent_id)
    caller = sip_caller(number, call_ms=14_000, play=speech_ulaw_wav())
    await asyncio.to_thread(caller.wait_received, "200", timeout=30)
    assert await asyncio.to_thread(caller.wait_exit, timeout=40) == 0, caller.describe()

    async def recorded():
        status, listed = await product.request("GET", "/api/sessions?direction=inbound&limit=100")
        assert status == 200, listed
        done = [
            s
            for s in listed["sessions"]
            if s["to_number"] == number and s["recordingDuration"] is not None and s["endedAt"]
        ]
        return done

    (s,) = await _wait(recorded, timeout=45, what="the phone call's recording finalized", product=product)
    # the notice first, heard whole; the caller's looping speech may then cut into the (interruptible) greeting
    assert (s["transcript"][0]["speaker"], s["transcript"][0]["content"]) == ("AGENT", NOTICE), s["transcript"]
    assert not s["transcript"][0]["interrupted"]
    path = recorded_file(product, s, "phone call")

    left, right = _channels(path)
    caller_w, agent_w = _windows_rms(left), _windows_rms(right)
    loud = 0.01  # -40 dBFS
    # the caller's looping speech (0.5 s pauses between repetitions) fills much of the left channel, with gaps;
    # the agent's notice and greeting are on the right, and the two channels are not the same audio
    caller_share = float(np.mean(caller_w > loud))
    print(f"left: {caller_share:.0%} of windows loud; right: {np.mean(agent_w > loud):.0%}")
    assert caller_share > 0.3 and np.mean(caller_w < loud / 10) > 0.02
    assert np.mean(agent_w > loud) > 0.1
    both = (caller_w > loud) & (agent_w > loud)
    assert np.mean(both) < min(caller_share, np.mean(agent_w > loud))  # not one signal copied to both sides


async def test_a_recorded_outbound_call_to_a_voicemail_holds_its_greeting_and_then_the_message(
    sip_product,
    answering,  # noqa: F811
):
    product = sip_product
    greeting, callee = answering("reached-sam")
    agent_id = await _agent(
        product,
        voicemailAction="leave_message",
        voicemailMessage=MESSAGE,
        recordingEnabled=True,
        recordingNotice="This call is recorded.",
    )
    placed = await _place(product, agent_id)
    await asyncio.to_thread(callee.wait_received, "BYE", timeout=90)
    await _ended(product, placed["session_id"])
    s = await product.wait_session(
        placed["session_id"],
        "alice",
        lambda s: s["recordingDuration"] is not None,
        timeout=30,
        what="the recording finalized",
    )
    assert (s["answeredBy"], s["endReason"]) == ("machine-vm", "voicemail"), s
    # a voicemail gets the message alone: the notice is the consent of a person on the line, said with the greeting
    assert [t["content"] for t in s["transcript"] if t["speaker"] == "AGENT"] == [MESSAGE], s["transcript"]
    path = recorded_file(product, s, "outbound call")

    callee_w, agent_w = (_windows_rms(x) for x in _channels(path))
    loud = 0.01
    callee_loud, agent_loud = np.flatnonzero(callee_w > loud), np.flatnonzero(agent_w > loud)
    assert callee_loud.size and agent_loud.size, (callee_loud.size, agent_loud.size)
    # the greeting (its words and beep) on the callee's side; the agent's message after it, on the other side
    greeting_s = (callee_loud[-1] - callee_loud[0] + 1) * WINDOW
    print(
        f"callee's side loud {callee_loud[0] * WINDOW:.1f}-{(callee_loud[-1] + 1) * WINDOW:.1f} s "
        f"({greeting_s:.1f} s; the greeting's sound {spoken_seconds(greeting):.1f} s with its lead); "
        f"agent's side from {agent_loud[0] * WINDOW:.1f} s"
    )
    assert greeting_s > spoken_seconds(greeting) - 1.5  # the lead silence is not loud
    assert agent_loud[0] > callee_loud[-1], "the agent spoke before the beep was over"
    assert (agent_loud.size * WINDOW) > 2.0  # the message, heard on the agent's side
