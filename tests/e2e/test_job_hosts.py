"""The `hosted` executor end to end: real calls, two per job process; a killed host ends its own call only, the
calls in the other host go on, a new call finds a place, and the product stops with no host left behind."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import time
from pathlib import Path

import pytest

from tests.e2e.conftest import own_stack
from tests.e2e.test_failures import _ask
from tests.e2e.test_voice_calls import _agent
from tests.test_job_hosts import _alive


@pytest.fixture(scope="module")
def hosted_product(netns_ip: str, e2e_workdir: Path, fakes):
    """`voxarena serve` with the hosted executor, two calls per job host, on a livekit-server of its own (its
    webhooks come back to it)."""
    extra = {"VOXARENA_JOB_EXECUTOR": "hosted", "VOXARENA_CALLS_PER_HOST": "2"}
    with own_stack(e2e_workdir, fakes, "hosted", extra=extra) as (product, _server):
        yield product


async def _host_of(product, session_id: str, timeout: float = 20) -> int:
    """The job host whose thread runs the session's job: its pid, from the job's first log line there."""
    pattern = re.compile(rf"voxarena\.job \[job host (\d+)\]: job \S+: session {session_id} ")
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if m := pattern.search(product.process.log_path.read_text(errors="replace")):
            return int(m.group(1))
        await asyncio.sleep(0.2)
    raise AssertionError(f"no job host logged session {session_id}\n{product.log_tail(60)}")


async def test_calls_share_job_hosts_and_a_killed_host_ends_only_its_own_call(hosted_product):
    product = hosted_product
    agent_id = await _agent(product, "hosted-user")
    calls = []
    try:
        for _ in range(3):
            client, tok = await product.join(agent_id, "hosted-user")
            calls.append((client, tok["sessionId"]))
            t0 = time.monotonic()
            await client.wait_for_audio(after=t0, min_nonsilent_s=0.5, timeout=30)  # greeted
            await client.wait_for_quiet(quiet_s=0.8, timeout=30)
        hosts = [await _host_of(product, sid) for _, sid in calls]
        assert hosts[0] == hosts[1] != hosts[2], f"two calls in the first host, the third in another: {hosts}"
        assert os.getpid() not in hosts and product.process.pid not in hosts

        gone = calls[2][0].disconnected()
        os.kill(hosts[2], signal.SIGKILL)  # the third call's host dies
        lost = await product.wait_session(
            calls[2][1], "hosted-user", lambda s: s["endedAt"] is not None, timeout=30, what="ended with its host"
        )
        await asyncio.wait_for(gone, 30)  # its room closed: the caller is not left alone in it
        for client, _ in calls[:2]:  # the first host's calls answer another turn each
            await _ask(client)
        client, tok = await product.join(agent_id, "hosted-user")  # and a new call finds a place
        calls.append((client, tok["sessionId"]))
        await _ask(client)
        assert await _host_of(product, tok["sessionId"]) != hosts[2]
    finally:
        for client, _ in calls:
            await client.disconnect()
    log = product.process.log_path.read_text(errors="replace")
    assert re.search(rf"job host \S+ \(pid {hosts[2]}\) exited \(code -9\)", log), product.log_tail(60)
    assert lost["endReason"] == "error" and f"(pid {hosts[2]}) exited (code -9)" in lost["error"], lost
    assert lost["analysisStatus"] == "skipped", lost
    for _, sid in calls[:2]:
        s = await product.wait_session(sid, "hosted-user", lambda s: s["endedAt"] is not None, timeout=60, what="ended")
        assert s["endReason"] != "error" and s["error"] is None, s
        assert [t["speaker"] for t in s["transcript"]].count("USER") == 1, s["transcript"]

    code = product.stop()
    assert code == 0, product.log_tail(60)
    assert not any(_alive(pid) for pid in set(hosts)), "no job host outlives the product"
