"""A deploy that outlasts its drain: `voxarena serve` gets SIGTERM with a web call up, waits its drain timeout, and
stops. The caller is hung up (not left in an open room) and the session says the worker shut down: never a call
that ended well (`user_initiated`, LiveKit's own close reason for a job closed from outside)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.conftest import own_stack
from tests.harness.product import Product

GREETING = "Hello! Thanks for calling. How can I help?"
DRAIN_SECONDS = 3


@pytest.fixture
def short_drain(e2e_workdir: Path, fakes) -> Iterator[Product]:
    """A product of its own (it is stopped by the test) on its own livekit-server, draining for DRAIN_SECONDS."""
    extra = {"VOXARENA_DRAIN_TIMEOUT_SECONDS": str(DRAIN_SECONDS)}
    with own_stack(e2e_workdir, fakes, "shutdown", extra=extra) as (product, _server):
        yield product


async def test_a_call_up_when_the_drain_times_out_is_hung_up_and_ends_worker_shutdown(short_drain):
    product = short_drain
    agent_id = await product.create_agent(firstMessage=GREETING)
    client, tok = await product.join(agent_id)
    gone = client.disconnected()
    try:
        await client.wait_for_audio(min_nonsilent_s=0.5, timeout=30)
        # a deploy: SIGTERM, the drain waits DRAIN_SECONDS for the call, which goes on, then the product stops;
        # started again on the same data dir to read the session back
        rc = await asyncio.to_thread(product.restart, stop_timeout=60)
        assert rc == 0, product.log_tail()
        await asyncio.wait_for(gone, 15)  # the caller was hung up, not left in the room
    finally:
        await client.disconnect()
    s = await product.wait_session(
        tok["sessionId"], "alice", lambda s: s["status"] == "ended", timeout=30, what="ended"
    )
    assert s["endReason"] == "worker_shutdown", (s, product.log_tail())
    assert s["error"] == "the worker shut down with the call in progress", s
