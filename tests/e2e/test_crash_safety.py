"""SIGKILL of job processes at random points of scripted calls: nothing metered is lost, nothing counts twice."""

from __future__ import annotations

import asyncio
import os
import random
import signal
import time
from decimal import Decimal

from tests.e2e.test_voice_calls import _agent
from tests.harness.audio import speech_wav
from tests.harness.product import job_process_pids


async def _killed_call(product, agent_id: str, user: str, kill_after: float) -> str:
    client, tok = await product.join(agent_id, user)
    try:
        t0 = time.monotonic()
        speaking = asyncio.ensure_future(
            client.publish_wav(speech_wav("What are your opening hours?"), trail_silence=2.0)
        )
        await asyncio.sleep(kill_after)
        pids = job_process_pids(product)
        assert pids, "no job processes found to kill"
        for pid in pids:
            os.kill(pid, signal.SIGKILL)
        await speaking
        await asyncio.sleep(max(0.0, 8 - (time.monotonic() - t0)))
    finally:
        await client.disconnect()
    return tok["sessionId"]


async def test_sigkill_mid_call_loses_nothing_metered_and_counts_nothing_twice(voice_stack):
    product, _, fakes = voice_stack
    user = "crash-user"
    agent_id = await _agent(product, user)
    await asyncio.to_thread(fakes.wait_idle)  # earlier tests' calls (analysis included) are done before counting
    fakes.reset()
    rng = random.Random(int(os.environ.get("VOXARENA_CRASH_SEED", "11")))
    sessions = [await _killed_call(product, agent_id, user, rng.uniform(0.5, 6.0)) for _ in range(3)]
    # The sessions of the dead jobs are closed by LiveKit's room_finished webhook once the rooms empty.
    for sid in sessions:
        await product.wait_session(sid, user, lambda s: s["endedAt"] is not None, timeout=60, what="closed")
    counted = await asyncio.to_thread(fakes.wait_idle)  # the dead jobs' sockets are closed, nothing moves
    events = []
    for sid in sessions:
        _status, breakdown = await product.request("GET", f"/api/sessions/{sid}/cost-breakdown", user)
        events += breakdown["events"]
    keys = [e["idempotency_key"] for e in events]
    assert len(keys) == len(set(keys))

    def qty(event_type, kind=None):
        return sum(
            Decimal(str(e["quantity"]))
            for e in events
            if e["event_type"] == event_type and (kind is None or e["token_kind"] == kind)
        )

    stt = qty("stt_minutes") * 60
    served = Decimal(str(counted["deepgram"]["audio_seconds"]))
    print(
        f"STT metered {stt:.2f}s of {served:.2f}s streamed; tokens {qty('llm_tokens')} of "
        f"{counted['gemini']['total_tokens']}; characters {qty('tts_characters')} of "
        f"{counted['elevenlabs_tts']['characters']}"
    )
    # Never more than the providers served (nothing twice) ...
    assert stt <= served + Decimal("0.1")
    assert qty("llm_tokens", "input") <= counted["gemini"]["prompt_tokens"]
    assert qty("llm_tokens", "output") <= counted["gemini"]["completion_tokens"]
    # ... and nothing already metered lost: at most the last flush window (1 s of audio) per killed job is
    # unmetered, plus audio the provider received from the dying process after its last flush.
    assert served - stt <= Decimal(len(sessions)) * Decimal("1.5"), (stt, served)


async def test_a_call_whose_job_process_dies_ends_at_once_saying_why_and_its_caller_is_disconnected(voice_stack):
    product, _, _ = voice_stack
    agent_id = await _agent(product, "crash-user")
    client, tok = await product.join(agent_id, "crash-user")
    gone = client.disconnected()
    try:
        t0 = time.monotonic()
        await client.wait_for_audio(after=t0, min_nonsilent_s=0.5, timeout=30)  # the call is up: greeted
        pids = job_process_pids(product)
        assert pids, "no job processes found to kill"
        for pid in pids:
            os.kill(pid, signal.SIGKILL)
        s = await product.wait_session(
            tok["sessionId"], "crash-user", lambda s: s["endedAt"] is not None, timeout=30, what="ended with its job"
        )
        await asyncio.wait_for(gone, 30)  # the room closed with it, not left to the caller
    finally:
        await client.disconnect()
    assert s["endReason"] == "error" and "job process exited (code -9)" in s["error"], s
    assert s["analysisStatus"] == "skipped", s  # not pending for ever: no job is left to run it
