"""The `hosted` job executor: several calls per job process, each on its own thread, with a memory cap per process.

LiveKit's executors are the two ends: `process` gives every call a process of its own (isolated, ~42 MB per added
call: a warm process and the call's room), `thread` runs every call in the worker's own process (~8 MB per added call,
but one GIL, one crash and one heap for all of them, and no memory limit). A job host is in between: a process forked
from LiveKit's forkserver (the product's modules preloaded, like a job process) that runs up to
`VOXARENA_CALLS_PER_HOST` calls, each exactly as LiveKit's thread executor runs one (`thread_main`, on a socket
pair speaking LiveKit's job IPC). A crash takes the calls of one host, not of the worker; a host whose memory passes
`VOXARENA_JOB_HOST_MEMORY_MB` takes no new call, and one that passes `VOXARENA_JOB_HOST_MEMORY_LIMIT_MB` is killed
(its calls end, the other hosts' go on), the protection LiveKit's `job_memory_limit_mb` gives a job process.

On the worker's side each call still has its executor: `HostedJobExecutor` is LiveKit's `ThreadJobExecutor` but for
where its thread runs: the child end of the job's socket pair is passed to a host over a control socket
(SCM_RIGHTS), and the host says when the job's thread has ended. LiveKit's process pool builds thread executors by
name (`proc_pool.job_thread_executor.ThreadJobExecutor`); `install` points that name at a factory that gives a
hosted executor to the pool of a loop that has job hosts, and LiveKit's own to any other. Upstream, an executor
factory argument on `AgentServer` (or a "jobs per process" option) would remove the patch.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import socket
import threading
import time
import types
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, cast

from livekit.agents import utils
from livekit.agents.ipc import job_proc_lazy_main, job_thread_executor, proc_pool
from livekit.agents.ipc.job_executor import JobStatus
from livekit.agents.utils.aio import duplex_unix

log = logging.getLogger("voxarena.worker")

# How often the worker reads each host's memory (its resident set, from /proc).
MEMORY_CHECK_SECONDS = 2.0
# A host whose control socket closed waits this long for its calls' threads before it exits.
HOST_EXIT_GRACE_SECONDS = 15.0


LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


@dataclass(frozen=True)
class HostFunctions:
    """What every job thread of a host runs: LiveKit's per-process setup, the entry point and the session end."""

    initialize_process_fnc: Callable[[Any], Any]
    job_entrypoint_fnc: Callable[[Any], Any]
    session_end_fnc: Callable[[Any], Awaitable[None]] | None
    session_end_timeout: float
    log_level: str = "INFO"


def host_main(ctrl: socket.socket, fns: HostFunctions) -> None:
    """A job host's process: take job sockets from the worker, run each job on a thread, report each thread's end.

    Messages on `ctrl` (a SOCK_SEQPACKET pair): worker -> host, a slot name with one file descriptor (the job's
    end of its socket pair); host -> worker, the slot name when that job's thread has ended. The worker closing its
    end (it stopped, or died) ends the host once its threads are done."""
    # Drained by the worker, like a job process: a SIGTERM or Ctrl-C to the whole process group must not end calls.
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    # the product's format, with the host's pid: which process a call's lines came from
    host_format = LOG_FORMAT.replace("%(name)s:", "%(name)s [job host %(process)d]:")
    logging.basicConfig(level=getattr(logging, fns.log_level.upper(), logging.INFO), format=host_format)
    send_lock = threading.Lock()
    threads: list[threading.Thread] = []

    def joined(slot: str) -> None:
        with send_lock, contextlib.suppress(OSError):
            ctrl.send(slot.encode())

    while True:
        try:
            msg, fds, _flags, _addr = socket.recv_fds(ctrl, 256, 1)
        except OSError:
            break
        if not msg:
            break
        slot = msg.decode()
        if not fds:
            log.error("job host %d: slot %s came without its socket", os.getpid(), slot)
            continue
        args = job_proc_lazy_main.ThreadStartArgs(
            mp_cch=socket.socket(fileno=fds[0]),
            initialize_process_fnc=fns.initialize_process_fnc,
            job_entrypoint_fnc=fns.job_entrypoint_fnc,
            session_end_fnc=fns.session_end_fnc,
            session_end_timeout=fns.session_end_timeout,
            user_arguments=None,
            join_fnc=lambda slot=slot: joined(slot),  # type: ignore[misc]
        )
        t = threading.Thread(target=job_proc_lazy_main.thread_main, args=(args,), name=f"job-{slot}", daemon=True)
        t.start()
        threads = [x for x in threads if x.is_alive()] + [t]
    deadline = time.monotonic() + HOST_EXIT_GRACE_SECONDS
    for t in threads:
        t.join(max(deadline - time.monotonic(), 0))
    os._exit(0)  # the job threads' native runtime must not run Python's interpreter teardown


def rss_mb(pid: int) -> float:
    """A process's resident memory in MB (0 once it is gone)."""
    try:
        with open(f"/proc/{pid}/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20
    except (OSError, IndexError, ValueError):
        return 0.0


@dataclass(eq=False)
class JobHost:
    """The worker's handle on one host process: its control socket and the jobs placed in it."""

    process: Any  # multiprocessing's Process
    ctrl: socket.socket
    name: str
    # slot -> its thread's end: None, or why it ended with its host (the host died)
    jobs: dict[str, asyncio.Future[str | None]] = field(default_factory=dict)
    full: bool = False  # over the memory cap: no new call
    killed: bool = False  # over the memory limit
    ended: bool = False  # its control socket closed: the host has exited or is exiting
    reader: asyncio.Task[None] | None = None

    @property
    def pid(self) -> int:
        return int(self.process.pid or 0)

    @property
    def alive(self) -> bool:
        return self.reader is not None and not self.ended


class JobHosts:
    """The worker's job hosts: where each new job thread goes, each host's memory, and their end."""

    def __init__(
        self,
        *,
        mp_ctx: Any,  # LiveKit's multiprocessing context (a forkserver's)
        calls_per_host: int,
        memory_mb: float,
        memory_limit_mb: float,
        loop: asyncio.AbstractEventLoop,
        log_level: str = "INFO",
    ) -> None:
        self._mp_ctx = mp_ctx
        self.log_level = log_level
        self.calls_per_host = max(1, calls_per_host)
        self.memory_mb = memory_mb
        self.memory_limit_mb = memory_limit_mb
        self._loop = loop
        self.hosts: list[JobHost] = []
        self._lock = asyncio.Lock()
        self._seq = 0
        self._started = 0  # hosts started, for their names (H1, H2, ...)
        self._closed = False
        self._watch: asyncio.Task[None] | None = None

    async def place(self, child: socket.socket, fns: HostFunctions) -> tuple[JobHost, asyncio.Future[str | None]]:
        """Send a job's end of its socket pair to a host with room (a new one if none has), and return the host
        and a future that resolves when the job's thread there has ended (None) or the host has gone (why)."""
        async with self._lock:
            if self._closed:
                raise RuntimeError("job hosts are closed")
            self._check_memory()
            host = next((h for h in self.hosts if h.alive and not h.full and len(h.jobs) < self.calls_per_host), None)
            if host is None:
                host = await self._spawn(fns)
            self._seq += 1
            slot = f"{host.name}.{self._seq}"
            done: asyncio.Future[str | None] = self._loop.create_future()
            host.jobs[slot] = done
            try:
                socket.send_fds(host.ctrl, [slot.encode()], [child.fileno()])
            except OSError:
                host.jobs.pop(slot, None)
                raise
            finally:
                child.close()
            if self._watch is None:
                self._watch = asyncio.create_task(self._watch_memory(), name="job-host-memory")
            return host, done

    async def _spawn(self, fns: HostFunctions) -> JobHost:
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        self._started += 1
        name = f"H{self._started}"
        proc = self._mp_ctx.Process(target=host_main, args=(theirs, fns), name=f"voxarena-job-host-{name}")
        try:
            await asyncio.to_thread(proc.start)
        finally:
            theirs.close()
        ours.setblocking(False)
        host = JobHost(process=proc, ctrl=ours, name=name)
        host.reader = asyncio.create_task(self._read(host), name=f"job-host-{name}")
        self.hosts.append(host)
        log.info("job host %s started (pid %d, up to %d calls)", name, host.pid, self.calls_per_host)
        return host

    async def _read(self, host: JobHost) -> None:
        """Each ended job thread's slot, until the host closes its end (it exited, or was killed)."""
        try:
            while True:
                try:
                    msg = await self._loop.sock_recv(host.ctrl, 256)
                except OSError:
                    msg = b""
                if not msg:
                    break
                done = host.jobs.pop(msg.decode(), None)
                if done is not None and not done.done():
                    done.set_result(None)
                if not host.jobs and (host.full or self._spare(host)):
                    self._retire(host)
        finally:
            host.ended = True  # no job is placed here any more (the reader may wait for the exit a while)
            with contextlib.suppress(OSError):
                host.ctrl.close()
            code = await asyncio.to_thread(self._reap, host)
            why = f"its job host {host.name} (pid {host.pid}) exited (code {code})" + (
                f", killed over VOXARENA_JOB_HOST_MEMORY_LIMIT_MB ({self.memory_limit_mb:.0f} MB)"
                if host.killed
                else ""
            )
            lost = [f for f in host.jobs.values() if not f.done()]
            for f in lost:
                f.set_result(why)
            host.jobs.clear()
            if lost and not self._closed:
                log.error(
                    "job host %s (pid %d) exited (code %s) with %d job threads in it: their calls ended with it",
                    host.name,
                    host.pid,
                    code,
                    len(lost),
                )
            if host in self.hosts:
                self.hosts.remove(host)

    @staticmethod
    def _reap(host: JobHost) -> int | None:
        host.process.join(HOST_EXIT_GRACE_SECONDS + 5)
        if host.process.is_alive():
            host.process.kill()
            host.process.join(5)
        return host.process.exitcode

    def _spare(self, host: JobHost) -> bool:
        """An empty host is let go when another live host still has room for a call."""
        return any(h is not host and h.alive and not h.full and len(h.jobs) < self.calls_per_host for h in self.hosts)

    def _retire(self, host: JobHost) -> None:
        """No new job for this host: closing its control socket ends it once its threads are done."""
        host.full = True
        with contextlib.suppress(OSError):
            host.ctrl.shutdown(socket.SHUT_WR)

    def _check_memory(self) -> None:
        for host in self.hosts:
            if not host.alive or host.killed:
                continue
            mb = rss_mb(host.pid)
            if self.memory_limit_mb and mb > self.memory_limit_mb:
                log.error(
                    "job host %s (pid %d) uses %.0f MB, over VOXARENA_JOB_HOST_MEMORY_LIMIT_MB (%.0f): killed, "
                    "with its %d job threads (their calls end)",
                    host.name,
                    host.pid,
                    mb,
                    self.memory_limit_mb,
                    len(host.jobs),
                )
                host.full = host.killed = True
                with contextlib.suppress(ProcessLookupError):
                    os.kill(host.pid, signal.SIGKILL)
            elif self.memory_mb and mb > self.memory_mb and not host.full:
                log.warning(
                    "job host %s (pid %d) uses %.0f MB, over VOXARENA_JOB_HOST_MEMORY_MB (%.0f): it takes no new call",
                    host.name,
                    host.pid,
                    mb,
                    self.memory_mb,
                )
                host.full = True
                if not host.jobs:
                    self._retire(host)

    async def _watch_memory(self) -> None:
        while True:
            await asyncio.sleep(MEMORY_CHECK_SECONDS)
            self._check_memory()

    async def aclose(self) -> None:
        """After the worker's executors have closed: every host told to end, and reaped."""
        self._closed = True
        if self._watch is not None:
            self._watch.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._watch
        for host in list(self.hosts):
            self._retire(host)
        readers = [h.reader for h in self.hosts if h.reader is not None]
        if readers:
            await asyncio.gather(*readers, return_exceptions=True)


class HostedJobExecutor(job_thread_executor.ThreadJobExecutor):
    """LiveKit's thread executor, its thread in a job host instead of the worker's process."""

    def __init__(self, *, hosts: JobHosts, **kw: Any) -> None:
        super().__init__(**kw)
        self._hosts = hosts
        self.host: JobHost | None = None
        self.lost: str | None = None  # why the job ended with its host

    async def _start(self) -> None:
        # LiveKit's ThreadJobExecutor._start, but for where the job's thread runs (livekit-agents 1.8.9)
        async with self._lock:
            mp_pch, mp_cch = socket.socketpair()
            pch: duplex_unix._AsyncDuplex | None = None
            try:
                pch = await duplex_unix._AsyncDuplex.open(mp_pch)
                self._pch = pch
                fns = HostFunctions(
                    initialize_process_fnc=self._opts.initialize_process_fnc,
                    job_entrypoint_fnc=self._opts.job_entrypoint_fnc,
                    session_end_fnc=self._opts.session_end_fnc,
                    session_end_timeout=self._opts.session_end_timeout,
                    log_level=self._hosts.log_level,
                )
                self.host, ended = await self._hosts.place(mp_cch, fns)
                self._join_fut = cast("asyncio.Future[None]", ended)  # its result: None, or why the host died
                self._main_atask = asyncio.create_task(self._main_task())
            except Exception:
                with contextlib.suppress(OSError):
                    mp_cch.close()
                if pch is not None:
                    with contextlib.suppress(duplex_unix.DuplexClosed):
                        await pch.aclose()
                else:
                    with contextlib.suppress(OSError):
                        mp_pch.close()
                raise

    @utils.log_exceptions(logger=log)
    async def _main_task(self) -> None:
        await super()._main_task()
        lost = self._join_fut.result() if self._join_fut.done() else None
        if lost is not None:  # the host died with the job's thread in it: the job failed, as a dead job process does
            self.lost = lost
            self._job_status = JobStatus.FAILED

    def logging_extra(self) -> dict[str, Any]:
        extra = super().logging_extra()
        if self.host is not None:
            extra["job_host"] = self.host.name
            extra["pid"] = self.host.pid
        return extra


_HOSTS: dict[asyncio.AbstractEventLoop, JobHosts] = {}
_LIVEKIT_THREAD_EXECUTOR = job_thread_executor.ThreadJobExecutor


def _executor(**kw: Any) -> job_thread_executor.ThreadJobExecutor:
    hosts = _HOSTS.get(kw["loop"])
    if hosts is None:
        return _LIVEKIT_THREAD_EXECUTOR(**kw)
    return HostedJobExecutor(hosts=hosts, **kw)


def install(hosts: JobHosts) -> None:
    """Thread executors built by LiveKit's process pool on `hosts`' loop run their jobs in those hosts."""
    _HOSTS[hosts._loop] = hosts
    proc_pool.job_thread_executor = types.SimpleNamespace(ThreadJobExecutor=_executor)  # type: ignore[assignment]


def uninstall(hosts: JobHosts) -> None:
    _HOSTS.pop(hosts._loop, None)
