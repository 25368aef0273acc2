"""A recorded web call through the whole product: the agent says the recording notice first, the file is a stereo
Ogg/Opus that ffprobe and ffmpeg read, as long as the session, with the caller's speech on the left channel where
the caller spoke; the API serves it (Range too) to its owner only and deletes it."""

from __future__ import annotations

import asyncio
import json
import subprocess
import time
from datetime import datetime

import aiohttp
import numpy as np

from tests.harness.audio import speech_wav

NOTICE = "This call is recorded."
GREETING = "Hello! Thanks for calling. How can I help?"
RATE = 16_000


def _probe(path) -> dict:
    out = subprocess.run(
        ["ffprobe", "-v", "error", "-show_streams", "-show_format", "-of", "json", str(path)],
        check=True,
        capture_output=True,
        text=True,
    )
    return json.loads(out.stdout)


def _channels(path) -> np.ndarray:
    """The file decoded by ffmpeg: float32 samples, shape (2, n), at RATE."""
    raw = subprocess.run(
        ["ffmpeg", "-v", "error", "-i", str(path), "-f", "f32le", "-ac", "2", "-ar", str(RATE), "-"],
        check=True,
        capture_output=True,
    ).stdout
    return np.frombuffer(raw, dtype=np.float32).reshape(-1, 2).T


def _rms(x: np.ndarray, start: float, end: float) -> float:
    part = x[int(start * RATE) : int(end * RATE)]
    return float(np.sqrt(np.mean(np.square(part)))) if len(part) else 0.0


def _epoch(iso: str) -> float:
    return datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp()


async def test_a_recorded_web_call_is_stereo_ogg_aligned_with_the_session_and_the_callers_speech_is_on_the_left(
    voice_stack, tmp_path
):
    product, _, _ = voice_stack
    agent_id = await product.create_agent(
        name="Recorded desk", firstMessage=GREETING, recordingEnabled=True, recordingNotice=NOTICE
    )
    client, tok = await product.join(agent_id)
    try:
        t0 = time.monotonic()
        await client.wait_for_audio(after=t0, min_nonsilent_s=0.5, timeout=30)
        await client.wait_for_quiet(quiet_s=0.8, timeout=30)  # the notice and the greeting played out
        quiet_from = time.time()
        await client.wait_for_quiet(quiet_s=1.5, timeout=30)  # 1.5 s more in which the caller says nothing
        quiet_to = time.time()
        sent = await client.publish_wav(speech_wav("What are your opening hours?"), trail_silence=0.3)
        # the monotonic send times as wall-clock times, the recording's clock
        wall = time.time() - time.monotonic()
        speech = (sent.first_speech_at + wall, sent.last_speech_at + wall)
        await client.wait_for_audio(after=sent.last_speech_at, min_nonsilent_s=0.5, timeout=30)
        await client.wait_for_quiet(quiet_s=0.8, timeout=30)
    finally:
        await client.disconnect()
    sid = tok["sessionId"]
    s = await product.wait_session(
        sid,
        "alice",
        lambda s: s["recordingDuration"] is not None and s["endedAt"] is not None,
        timeout=45,
        what="ended, its recording finalized",
    )
    assert s["recordingUrl"] == f"/api/sessions/{sid}/recording"
    assert s["transcript"][0]["speaker"] == "AGENT" and s["transcript"][0]["content"] == NOTICE, s["transcript"]
    assert s["transcript"][1]["content"] == GREETING

    # the file: where the docs say, stereo Ogg/Opus, as long as the session
    (path,) = (product.data_dir / "recordings").rglob(f"{sid}.ogg")
    assert path.parent.parent == product.data_dir / "recordings" and path.parent.name.startswith("ten_"), path
    probe = _probe(path)
    (stream,) = probe["streams"]
    assert probe["format"]["format_name"] == "ogg" and stream["codec_name"] == "opus", probe
    assert stream["channels"] == 2, stream
    file_seconds = float(probe["format"]["duration"])
    session_seconds = _epoch(s["endedAt"]) - _epoch(s["startedAt"])
    print(f"file {file_seconds:.3f} s, session {session_seconds:.3f} s, stored {s['recordingDuration']} s")
    assert abs(file_seconds - session_seconds) < 0.5
    assert abs(s["recordingDuration"] - file_seconds) < 0.1

    # the caller's channel holds the caller's speech where it was spoken, and little else
    left, right = _channels(path)
    start = _epoch(s["startedAt"])
    spoke = _rms(left, speech[0] - start + 0.2, speech[1] - start - 0.1)
    quiet = _rms(left, quiet_from - start, quiet_to - start)
    agent_while_caller_spoke = _rms(right, speech[0] - start + 0.2, speech[1] - start - 0.1)
    print(
        f"left rms: speech {spoke:.5f}, quiet {quiet:.5f}; right during the caller's speech {agent_while_caller_spoke}"
    )
    assert spoke > 0.01 and spoke > 20 * max(quiet, 1e-5)
    assert _rms(right, 0, session_seconds) > 0.005  # the agent spoke on the right

    # the ledger has its minutes, a storage_minutes line of the local storage (priced at the shipped 0)
    line = await _ledger_line(product, sid, "storage_minutes", timeout=15)
    assert line["provider"] == "local" and line["total_cost_nanos"] == 0, line
    assert abs(float(line["quantity"]) * 60 - s["recordingDuration"]) < 0.001, line

    await served_then_deleted(product, s, path.read_bytes())
    assert not path.exists()
    status, s = await product.request("GET", f"/api/sessions/{sid}")
    assert status == 200, s
    assert s["recordingUrl"] is None and s["recordingDuration"] is None


async def _ledger_line(product, sid: str, event_type: str, *, timeout: float) -> dict:
    """The session's one usage event of `event_type`, once the job has written it (it follows the session's end)."""
    deadline = time.monotonic() + timeout
    costs: dict = {}
    while time.monotonic() < deadline:
        status, costs = await product.request("GET", f"/api/sessions/{sid}/cost-breakdown")
        lines = [e for e in costs.get("events", ()) if e["event_type"] == event_type] if status == 200 else []
        if lines:
            (line,) = lines
            return line
        await asyncio.sleep(0.2)
    raise AssertionError(f"no {event_type} line for session {sid} within {timeout} s: {costs}")


async def served_then_deleted(product, s: dict, whole: bytes) -> None:
    """The session's recording served to its owner, whole and by a range as the dashboard's player asks for it;
    another tenant's 404; then deleted by its owner."""
    sid, headers = s["id"], product.headers("alice")
    async with aiohttp.ClientSession() as http:
        async with http.get(product.base_url + s["recordingUrl"], headers=headers) as r:
            assert r.status == 200 and r.headers["Content-Type"] == "audio/ogg"
            assert await r.read() == whole
        async with http.get(product.base_url + s["recordingUrl"], headers={**headers, "Range": "bytes=100-199"}) as r:
            assert r.status == 206 and r.headers["Content-Range"] == f"bytes 100-199/{len(whole)}"
            assert await r.read() == whole[100:200]
    status, _ = await product.request("GET", f"/api/sessions/{sid}/recording", "mallory")
    assert status == 404
    status, body = await product.request("DELETE", f"/api/sessions/{sid}/recording")
    assert status == 200, body
