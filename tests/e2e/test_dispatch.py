"""No call is lost silently, against a real livekit-server: a caller whose agent never comes is told so (the
session ends as `no_agent_available`, the room is closed) after one retried dispatch; a worker at its call limit
makes the token route answer 503 with Retry-After instead of dispatching a call nobody would answer."""

from __future__ import annotations

import asyncio
import time

import aiohttp
import pytest

from tests.e2e.conftest import FAKE_KEY, _start_or_fail
from tests.e2e.test_failures import _agent, _ask, _greeted
from tests.harness.procs import free_port
from tests.harness.product import product_env, start_product


def _product(e2e_workdir, livekit_server, fakes, name: str, *, worker: bool, **extra: str):
    port = free_port("127.0.0.1")
    env = product_env(
        data_dir=e2e_workdir / f"{name}-data",
        port=port,
        livekit=livekit_server,
        fakes_urls=fakes.urls,
        api_key=FAKE_KEY,
        extra={"VOXARENA_AGENT_NAME": name, "VOXARENA_WORKER_ENABLED": "true" if worker else "false", **extra},
    )
    return _start_or_fail(start_product, workdir=e2e_workdir / name, port=port, env=env, worker=worker)


@pytest.fixture(scope="module")
def api_only(e2e_workdir, livekit_server, fakes):
    """The control API with no worker anywhere for its agent name: every dispatch waits in vain."""
    product = _product(
        e2e_workdir, livekit_server, fakes, "nobody-home", worker=False, VOXARENA_DISPATCH_TIMEOUT_SECONDS="3"
    )
    yield product
    product.stop()


@pytest.fixture(scope="module")
def one_call_worker(e2e_workdir, livekit_server, fakes):
    product = _product(e2e_workdir, livekit_server, fakes, "one-call", worker=True, VOXARENA_MAX_CONCURRENT_CALLS="1")
    yield product
    product.stop()


async def test_a_call_no_worker_takes_is_retried_once_then_ends_as_no_agent_available(api_only):
    product = api_only
    agent_id = await _agent(product)
    client, tok = await product.join(agent_id)
    try:
        s = await product.wait_session(
            tok["sessionId"], "alice", lambda s: s["endedAt"] is not None, timeout=60, what="given up"
        )
        deadline = time.monotonic() + 20
        while client.room.isconnected() and time.monotonic() < deadline:  # the room is closed on the caller
            await asyncio.sleep(0.1)
        assert not client.room.isconnected(), "the caller's room was not closed"
    finally:
        await client.disconnect()
    assert s["endReason"] == "no_agent_available" and "dispatched 2 times" in s["error"], s
    assert s["analysisStatus"] == "skipped" and s["analysis"] is None and s["transcript"] == []
    assert product.log_tail(400).count("dispatching again") == 1


async def test_at_its_call_limit_the_token_route_answers_503_with_retry_after_and_creates_nothing(one_call_worker):
    product = one_call_worker
    agent_id = await _agent(product)
    client, tok = await product.join(agent_id)
    try:
        await _greeted(client)  # the one call is running
        async with (
            aiohttp.ClientSession() as http,
            http.post(
                product.base_url + "/api/livekit/token", json={"agentId": agent_id}, headers=product.headers("alice")
            ) as r,
        ):
            body = await r.json()
            assert r.status == 503 and r.headers["Retry-After"] == "5", body
        assert body["type"] == "service_unavailable" and "the most this worker takes is 1" in body["detail"]
        await _ask(client)  # the running call is unaffected
    finally:
        await client.disconnect()
    status, sessions = await product.request("GET", "/api/sessions")
    assert status == 200 and [s["id"] for s in sessions["sessions"]] == [tok["sessionId"]]
    await product.wait_session(tok["sessionId"], "alice", lambda s: s["endedAt"] is not None, timeout=30, what="ended")
    # the slot is free again once the call's job is gone
    deadline, status = time.monotonic() + 30, 503
    while status == 503 and time.monotonic() < deadline:
        status, _ = await product.request("POST", "/api/livekit/token", json={"agentId": agent_id})
        if status == 503:
            await asyncio.sleep(0.5)
    assert status == 200
