"""A call through Google Cloud TTS, through the whole product: the job builds the real plugin from a service-account
file, which signs its own JWTs and speaks gRPC over TLS to the fake; the caller hears the agent, and the ledger holds
exactly the characters the fake received, priced at Google's rate."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import pytest

from tests.e2e.conftest import own_stack
from tests.e2e.test_voice_calls import _agent, _call, _ended_with_analysis


@pytest.fixture(scope="module")
def google_stack(netns_ip: str, e2e_workdir: Path, fakes):
    """`voxarena serve` configured for Google Cloud TTS against the fakes (its own livekit-server: one worker per
    server, so dispatch is unambiguous). Yields (product, fakes)."""
    extra = {
        "VOXARENA_GOOGLE_CREDENTIALS_FILE": fakes.urls["google_credentials_file"],
        "VOXARENA_GOOGLE_TTS_ENDPOINT": fakes.urls["google_tts_endpoint"],
        # gRPC trusts the fake's certificate (read once per process, before any channel)
        "GRPC_DEFAULT_SSL_ROOTS_FILE_PATH": fakes.urls["google_tts_ca_file"],
    }
    with own_stack(e2e_workdir, fakes, "google", extra=extra) as (product, _server):
        yield product, fakes


async def test_a_call_through_google_tts_is_heard_and_its_characters_billed_exactly(google_stack):
    product, fakes = google_stack
    user = "google-user"
    agent_id = await _agent(product, user, ttsProvider="google")
    before = fakes.counters()["google_tts"]
    session_id, latency = await _call(product, agent_id, user=user)  # the greeting, then one turn, both heard
    s = await product.wait_session(session_id, user, _ended_with_analysis, timeout=45, what="ended")
    assert s["error"] is None and 0 < latency < 10
    assert [t["speaker"] for t in s["transcript"]][:3] == ["AGENT", "USER", "AGENT"], s["transcript"]
    after = fakes.counters()["google_tts"]
    received = after["characters"] - before["characters"]
    assert received > 0 and after["auth_failures"] == before["auth_failures"]

    status, breakdown = await product.request("GET", f"/api/sessions/{session_id}/cost-breakdown", user)
    assert status == 200
    tts = [e for e in breakdown["events"] if e["event_type"] == "tts_characters"]
    assert tts and {e["provider"] for e in tts} == {"google"} and all(e["priced"] for e in tts)
    assert sum(Decimal(str(e["quantity"])) for e in tts) == received
    assert sum(e["total_cost_nanos"] for e in tts) == int(Decimal("0.000016") * received * 10**9)
