"""Job hosts (the `hosted` executor): real host processes from a forkserver, each running LiveKit's job thread main
on the sockets it is handed. A job whose worker end is left open waits in LiveKit's initialize; closing that end
ends its thread, which the host reports."""

from __future__ import annotations

import asyncio
import logging
import multiprocessing
import os
import socket
import time

import pytest

from worker.job_hosts import HostFunctions, JobHosts, rss_mb


def _setup(proc) -> None:  # never reached: the tests' jobs are not initialized
    raise AssertionError("not initialized in these tests")


async def _entry(ctx) -> None:
    raise AssertionError("no job runs in these tests")


FNS = HostFunctions(
    initialize_process_fnc=_setup, job_entrypoint_fnc=_entry, session_end_fnc=None, session_end_timeout=1
)


def _hosts(**over) -> JobHosts:
    kw = {"calls_per_host": 2, "memory_mb": 0.0, "memory_limit_mb": 0.0}
    kw.update(over)
    return JobHosts(mp_ctx=multiprocessing.get_context("forkserver"), loop=asyncio.get_running_loop(), **kw)


async def _job(hosts: JobHosts):
    """A job placed in a host; returns (the worker's end, its host, the future of its thread's end)."""
    ours, theirs = socket.socketpair()
    host, ended = await hosts.place(theirs, FNS)
    assert theirs.fileno() == -1  # the worker's copy of the child's end is closed once sent
    return ours, host, ended


async def _until(predicate, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, what
        await asyncio.sleep(0.05)


async def _settled(pid: int, timeout: float = 30) -> float:
    """A host's resident memory once it has stopped growing (its imports done, its job thread waiting)."""
    deadline = time.monotonic() + timeout
    last = rss_mb(pid)
    while time.monotonic() < deadline:
        await asyncio.sleep(0.5)
        now = rss_mb(pid)
        if abs(now - last) < 1:
            return now
        last = now
    raise AssertionError(f"host {pid} still growing after {timeout}s ({last:.0f} MB)")


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split()[2] != "Z"
    except OSError:
        return False


async def test_jobs_fill_a_host_up_to_its_calls_then_a_new_one_and_each_threads_end_is_reported():
    hosts = _hosts()
    try:
        jobs = [await _job(hosts) for _ in range(3)]
        first, second, third = (host for _, host, _ in jobs)
        assert first is second and third is not first, "two jobs per host, then a second host"
        assert len(hosts.hosts) == 2 and first.pid != third.pid
        assert sorted(len(h.jobs) for h in hosts.hosts) == [1, 2]
        assert all(_alive(h.pid) for h in hosts.hosts)
        assert not any(ended.done() for _, _, ended in jobs)

        jobs[0][0].close()  # the worker's end closed: LiveKit's initialize fails, the thread ends, the host says so
        await asyncio.wait_for(jobs[0][2], 20)
        assert not jobs[1][2].done() and len(first.jobs) == 1
        # the freed place is taken before a new host is started
        ours, host, ended = await _job(hosts)
        assert host is first and len(hosts.hosts) == 2
        jobs.append((ours, host, ended))
    finally:
        for ours, _, _ in jobs:
            ours.close()
        pids = [h.pid for h in hosts.hosts]
        await asyncio.wait_for(hosts.aclose(), 60)
    assert all(ended.done() for _, _, ended in jobs)
    assert hosts.hosts == [] and not any(_alive(pid) for pid in pids), "every host exited and was reaped"


_BALLAST: list[bytes] = []


def _grow(proc) -> None:
    """A job's setup that takes 96 MB of its host's memory (and touches every page)."""
    _BALLAST.append(os.urandom(96 * 2**20))


GROWS = HostFunctions(
    initialize_process_fnc=_grow, job_entrypoint_fnc=_entry, session_end_fnc=None, session_end_timeout=1
)


async def test_a_host_over_the_memory_limit_is_killed_its_jobs_end_and_the_others_go_on(caplog):
    from livekit.agents.ipc import channel, proto
    from livekit.agents.utils.aio import duplex_unix

    caplog.set_level(logging.INFO, "voxarena.worker")
    hosts = _hosts(calls_per_host=1)
    jobs = []
    try:
        for fns in (GROWS, FNS):
            ours, theirs = socket.socketpair()
            jobs.append((ours, *await hosts.place(theirs, fns)))
        (grown_end, grown, grown_ended), (_, other, other_ended) = jobs
        assert grown is not other
        before = max([await _settled(grown.pid), await _settled(other.pid)])  # both hosts with their job waiting
        # LiveKit's first message to a job: the host's thread runs the job's setup, which takes 96 MB
        channel.send_message(duplex_unix._Duplex.open(grown_end), proto.InitializeRequest(http_proxy=""))
        await _until(lambda: rss_mb(grown.pid) > before + 80, 30, "the host grew by its job's setup")
        assert not grown_ended.done()
        hosts.memory_limit_mb = before + 40  # over it: the first host; under it: the other one
        await asyncio.wait_for(grown_ended, 20)  # the memory watch killed it: its job's thread is over
        await _until(lambda: grown not in hosts.hosts, 30, "the killed host was reaped")
        assert not other_ended.done() and _alive(other.pid) and other in hosts.hosts, "the other host goes on"
        messages = [r.getMessage() for r in caplog.records]
        assert any("over VOXARENA_JOB_HOST_MEMORY_LIMIT_MB" in m and str(grown.pid) in m for m in messages)
        assert any("exited (code -9) with 1 job threads in it" in m for m in messages), messages
    finally:
        for ours, _, _ in jobs:
            ours.close()
        await asyncio.wait_for(hosts.aclose(), 60)


async def test_a_host_over_the_memory_cap_takes_no_new_job():
    hosts = _hosts(calls_per_host=4)
    jobs = []
    try:
        ours, theirs = socket.socketpair()
        jobs.append((ours, *await hosts.place(theirs, FNS)))
        first = jobs[0][1]
        hosts.memory_mb = rss_mb(first.pid) / 2  # every host is over the cap
        ours, theirs = socket.socketpair()
        jobs.append((ours, *await hosts.place(theirs, FNS)))
        assert jobs[1][1] is not first and first.full, "the next job went to a new host"
        assert not jobs[0][2].done() and _alive(first.pid), "the capped host keeps its job"
        jobs[0][0].close()
        await _until(lambda: first not in hosts.hosts, 30, "the capped host, once empty, ended")
    finally:
        for ours, _, _ in jobs:
            ours.close()
        await asyncio.wait_for(hosts.aclose(), 60)


def test_the_settings_take_the_hosted_executor_and_refuse_a_host_of_no_calls():
    from core.settings import Settings

    s = Settings.from_env({"VOXARENA_JOB_EXECUTOR": "hosted", "VOXARENA_CALLS_PER_HOST": "3"})
    assert s.job_executor == "hosted" and s.calls_per_host == 3
    with pytest.raises(ValueError, match="CALLS_PER_HOST"):
        Settings.from_env({"VOXARENA_JOB_EXECUTOR": "hosted", "VOXARENA_CALLS_PER_HOST": "0"})


def test_the_job_threads_of_one_process_share_its_store_vad_and_price_book(tmp_path):
    """A host's (or the thread executor's) later job threads reuse what the first one's prewarm built."""
    from types import SimpleNamespace

    from core.settings import Settings
    from worker import entrypoint

    settings = Settings(data_dir=tmp_path, worker_enabled=False)
    first, second = SimpleNamespace(userdata={}), SimpleNamespace(userdata={})
    entrypoint.prewarm(settings, first)  # type: ignore[arg-type]
    entrypoint.prewarm(settings, second)  # type: ignore[arg-type]
    for key in ("store", "vad", "pricebook", "secrets"):
        assert second.userdata[key] is first.userdata[key], key
    other = SimpleNamespace(userdata={})
    entrypoint.prewarm(Settings(data_dir=tmp_path / "other", worker_enabled=False), other)  # type: ignore[arg-type]
    assert other.userdata["store"] is not first.userdata["store"]  # other settings, other resources
    first.userdata["store"].close()
    other.userdata["store"].close()
