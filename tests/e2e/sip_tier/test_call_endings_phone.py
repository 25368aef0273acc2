"""Phone calls that end badly, through the whole product and real SIP: a provider failing on an answered call ends
it with the apology heard in full and then a BYE at once (not livekit-sip's media timeout a minute later), the
session, the call and the billed line all stopping at that instant; calls never answered are not analysed."""

from __future__ import annotations

import asyncio
import re
import time
from datetime import datetime

from core.store.timefmt import parse_iso
from pipelines.config import DEFAULT_ERROR_MESSAGE
from tests.e2e.sip_tier.test_outbound_calls import _agent, _place, _wait_status
from tests.harness.audio import speech_ulaw_wav
from tests.harness.sip import SippCallee

_STAMP = re.compile(r"(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{6})")


def _bye_received_at(callee: SippCallee) -> float | None:
    """When sipp received the BYE (epoch seconds, from its message log's separator line, which is in local time),
    or None yet."""
    try:
        lines = callee.messages_path.read_text(errors="replace").splitlines()
    except OSError:
        return None
    stamp, receiving = None, False
    for line in lines:
        if line.startswith("-" * 20):
            found = _STAMP.search(line)
            stamp = datetime.strptime(found.group(1), "%Y-%m-%d %H:%M:%S.%f").timestamp() if found else None
            receiving = False
        elif "message received" in line:
            receiving = True
        elif receiving and line.strip():
            if line.startswith("BYE ") and stamp is not None:
                return stamp
            receiving = False
    return None


async def test_a_failing_llm_on_an_answered_call_apologises_in_full_then_hangs_up_within_two_seconds(
    sip_product, sip_callee, fakes
):
    product = sip_product
    callee: SippCallee = sip_callee("uas_answer.xml", answer_after_ms=300, play=speech_ulaw_wav())
    agent_id = await _agent(product)
    with fakes.failing(gemini="reject"):  # the callee talks at once: its first turn's reply fails for good
        placed = await _place(product, agent_id)
        await _wait_status(product, placed["call_id"], {"ANSWERED"}, timeout=40)
        deadline = time.monotonic() + 60
        while (bye_at := _bye_received_at(callee)) is None:
            assert time.monotonic() < deadline, (
                f"no BYE within 60 s of the answer\n{callee.describe()}\n{product.log_tail(80)}"
            )
            await asyncio.sleep(0.1)
        ended = await _wait_status(product, placed["call_id"], {"COMPLETED", "FAILED"}, timeout=15)
    rtp = callee.rtp.snapshot()
    assert rtp.last_nonsilent_at is not None, callee.describe()
    # the last audible packet the callee got (the apology's end), on the wall clock
    apology_end = time.time() - (time.monotonic() - rtp.last_nonsilent_at)
    assert 0 <= bye_at - apology_end <= 2.0, (bye_at - apology_end, callee.describe())
    assert await asyncio.to_thread(callee.wait_exit, timeout=15) == 0, callee.describe()  # BYE answered: done

    session = await product.wait_session(
        placed["session_id"], "alice", lambda s: s["status"] == "ended", timeout=30, what="ended"
    )
    assert (session["endReason"], ended["call_status"], ended["end_reason"]) == ("error", "FAILED", "error"), session
    assert session["error"].startswith("llm provider gemini failed"), session["error"]
    # the apology was heard in full, and the transcript holds all of it
    agent_said = [t["content"] for t in session["transcript"] if t["speaker"] == "AGENT"]
    assert agent_said[-1] == DEFAULT_ERROR_MESSAGE, session["transcript"]
    # the call, its session and the billed line stop at the hang-up, not at livekit-sip's media timeout
    ended_at = parse_iso(ended["ended_at"]).timestamp()
    assert abs(ended_at - apology_end) <= 2.0, (ended["ended_at"], apology_end)
    assert session["duration"] == ended["duration"], (session["duration"], ended)
    _status, breakdown = await product.request("GET", f"/api/sessions/{placed['session_id']}/cost-breakdown")
    (line,) = [e for e in breakdown["events"] if e["event_type"] == "sip_minutes"]
    assert abs(line["quantity"] * 60 - ended["duration"]) <= 1, (line, ended)
