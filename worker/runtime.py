"""What runs beside the control API in `voxarena serve`: the LiveKit AgentServer (every agent, one agent name),
an optional local LiveKit dev server, and the sweeper that closes sessions orphaned by a crash or a lost webhook."""

from __future__ import annotations

import asyncio
import logging
import multiprocessing
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import aiohttp
from livekit import api
from livekit.agents import AgentServer
from livekit.agents.ipc.job_executor import JobStatus
from livekit.agents.job import JobExecutorType
from livekit.agents.types import NOT_GIVEN
from livekit.agents.utils import is_given

from core.cluster import Lease, default_node_id
from core.heap import freeze_startup_objects
from core.livekit import http_url
from core.periodic import Periodic
from core.settings import Settings
from core.store import cluster as cluster_repo
from core.store import dispatch as dispatch_repo
from core.store import sessions as sessions_repo
from core.store.db import Store
from core.store.timefmt import to_iso

from . import entrypoint as job
from .job_hosts import JobHosts, install, uninstall
from .livekit_dev import LocalLiveKit
from .load import WorkerLoad, effective_max_calls

log = logging.getLogger("voxarena.worker")

# Connection failures are retried forever (the API keeps serving meanwhile); only other failures are fatal.
MAX_RETRY = 1_000_000_000
# A call dispatched within this long and not started yet holds a slot (a caller normally joins within seconds).
RESERVATION_SECONDS = 60.0


class Server(AgentServer):
    """LiveKit's AgentServer with a drain that cannot spin.

    Upstream's `drain` (livekit-agents 1.8.9) waits for the job processes in a loop that lists every process with a
    job still in the pool and joins each. A process leaves the pool only when its monitor task runs, one loop
    iteration after its process was joined; `join` of a process already joined returns without yielding. When a
    second process ends in the same iteration as the one being awaited (several calls hanging up together), the
    loop found it joined and still listed, joined it again without yielding, and so on for good: the event loop
    blocked (no API, no heartbeat, the drain's own timeout never fired) until a SIGKILL. A restart on the SIP tier
    hung just so: its log and heartbeat stopped as its three calls' processes ended together, and nothing was
    logged until the harness killed it (tests/test_drain.py shows upstream's drain spinning on that interleaving).
    Here each process is joined once and the loop yields between rounds; the upstream fix that would remove this
    class: join each listed process at most once (or `gather` them)."""

    async def drain(self, timeout: Any = NOT_GIVEN) -> None:
        timeout = timeout if is_given(timeout) else self._drain_timeout
        async with self._lock:
            if self._draining:
                return
            log.info("draining: no new calls; waiting for the %d running", len(self.active_jobs))
            self._draining = True
            await self._update_worker_status()

            async def _drain() -> None:
                await asyncio.gather(*self._job_lifecycle_tasks, return_exceptions=True)  # jobs being launched
                joined: set[int] = set()
                while procs := [
                    p for p in self._proc_pool.processes if p.running_job is not None and id(p) not in joined
                ]:
                    await asyncio.gather(*(p.join() for p in procs))
                    joined.update(id(p) for p in procs)

            if timeout:
                await asyncio.wait_for(_drain(), timeout)
            else:
                await _drain()


class Runtime:
    def __init__(self, settings: Settings, store: Store) -> None:
        self.settings = settings
        self.store = store
        self.local_livekit: LocalLiveKit | None = None
        self.server: AgentServer | None = None
        self.job_hosts: JobHosts | None = None
        self._server_task: asyncio.Task[None] | None = None
        # one node of a cluster sweeps at a time; the lease outlives a few sweeps so that it stays put
        self._sweeper = Periodic(
            "session-sweeper",
            settings.session_sweep_seconds,
            self.sweep_once,
            log,
            lease=Lease(
                store, "session-sweeper", settings.node_id or default_node_id(), 3 * settings.session_sweep_seconds
            ),
        )
        self.registered = False
        self._watching_jobs = False
        self._tasks: set[asyncio.Task[None]] = set()  # calls whose job died, being ended
        self._frozen = False  # the start's objects frozen out of the collector (core/heap.py)
        self._probe: tuple[float, dict[str, Any]] = (0.0, {})
        self.load = WorkerLoad(
            max_calls=effective_max_calls(settings.max_concurrent_calls),
            threshold=settings.load_threshold,
            active_calls=self._active_calls,
        )

    async def prepare(self) -> Settings:
        """Start the local LiveKit dev server if no LiveKit is configured; returns the settings to serve with."""
        s = self.settings
        if s.worker_enabled and not s.livekit_url:
            self.local_livekit = LocalLiveKit(
                s.data_dir, binary=s.livekit_server_bin, webhook_url=f"http://{s.host}:{s.port}/api/livekit/webhook"
            )
            await self.local_livekit.start()
            s = s.with_(
                livekit_url=self.local_livekit.url,
                livekit_api_key=self.local_livekit.api_key,
                livekit_api_secret=self.local_livekit.api_secret,
            )
            self.settings = s
        return s

    def _build_server(self) -> AgentServer:
        s = self.settings
        server = Server(
            # `hosted` is LiveKit's thread executor with each thread in a job host (worker/job_hosts.py)
            job_executor_type=JobExecutorType.PROCESS if s.job_executor == "process" else JobExecutorType.THREAD,
            setup_fnc=job.process_setup(s),
            # imported once in the forkserver and inherited copy-on-write, not again by every job process
            # (~0.3 s of CPU and ~6 MB each; bench/README.md, cores)
            preload_modules=[job.__name__],
            num_idle_processes=s.num_idle_processes,
            host="127.0.0.1",
            port=s.worker_port,
            ws_url=s.livekit_url,
            api_key=s.livekit_api_key,
            api_secret=s.livekit_api_secret,
            max_retry=MAX_RETRY,
            drain_timeout=int(s.drain_timeout_seconds),
            load_threshold=s.load_threshold,
            load_fnc=self.load,
        )
        server.rtc_session(job.entrypoint, agent_name=s.agent_name, on_session_end=job.on_session_end)
        server.on("worker_registered", self._on_registered)
        return server

    def _active_calls(self) -> int:
        return len(self.server.active_jobs) if self.server is not None and self.registered else 0

    def running_job_ids(self) -> set[str]:
        # Before the server first registers (its process pool is built inside run()), no job can run here, and
        # `active_jobs` would raise AttributeError: the sweeper's first pass at start failed on it.
        if self.server is None or not self.registered:
            return set()
        return {j.job.id for j in self.server.active_jobs}

    def open_slots(self) -> int:
        """How many more calls this worker takes now (0 while unregistered, draining or over its CPU limit): what
        this node tells the others at each heartbeat."""
        if not self.registered or self.server is None or self.server.draining:
            return 0
        if self.load.why_full(0) is not None:
            return 0
        return max(0, self.load.max_calls - self.load.active_calls())

    async def capacity(self) -> str | None:
        """Why no worker can take one more call now (None: one can). The token route refuses with 503 then,
        instead of dispatching a call nobody will answer. Calls dispatched but not started count as taken.

        On PostgreSQL the nodes share the store and LiveKit gives a job to a worker of any node: a call is refused
        only when the whole cluster is full (this worker's slots now, the others' at their last heartbeat, less the
        calls dispatched and not started anywhere). On SQLite this worker is the only one."""
        since = to_iso(datetime.now(UTC) - timedelta(seconds=RESERVATION_SECONDS))
        reserved = await self.store.read(dispatch_repo.reserved_calls, since)
        if self.store.backend == "postgresql":
            fresh = to_iso(datetime.now(UTC) - timedelta(seconds=3 * self.settings.node_heartbeat_seconds))
            others = await self.store.read(cluster_repo.open_slots_elsewhere, self.settings.node_id, fresh)
            own = self.open_slots()
            if own + others - reserved > 0:
                return None
            return (
                f"no node of the cluster can take a call now: {own} places on this node, {others} on the others, "
                f"{reserved} calls starting"
            )
        if not self.registered or self.server is None:
            return "the worker is not registered with LiveKit (yet)"
        if self.server.draining:
            return "the worker is shutting down"
        return self.load.why_full(reserved)

    def _on_registered(self, worker_id: str, server_info: Any) -> None:
        self.registered = True
        log.info("worker %s registered with LiveKit as agent %r", worker_id, self.settings.agent_name)
        if not self._watching_jobs and self.server is not None:
            self._watching_jobs = True
            self.server._proc_pool.on("process_closed", self._on_executor_closed)
        if not self._frozen:  # what the worker built to run (its process pool, its connection) lives as long as it
            # does; once only: a later registration (after a reconnect) may find calls of the thread executor running
            self._frozen = True
            freeze_startup_objects("worker registered")

    def _on_executor_closed(self, proc: Any) -> None:
        """A job's executor has ended: a job that failed (its process died, or its job host) ends its call here,
        since the job itself cannot: the session says why and the room is closed (the caller is not left alone in
        it until the orphan sweep)."""
        info = proc.running_job
        if info is None or proc.status != JobStatus.FAILED:
            return
        why = getattr(proc, "lost", None) or f"its job process exited (code {getattr(proc, 'exitcode', None)})"
        task = asyncio.create_task(self._end_failed_job(info.job.id, info.job.room.name, why))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _end_failed_job(self, job_id: str, room: str, why: str) -> None:
        error = f"the call's job died mid-call: {why}"
        ended = await self.store.write(sessions_repo.end_job_session, job_id, room, error)
        if not ended:
            return
        session_id = ", ".join(ended)
        log.error("session %s: %s; its room %s is closed", session_id, error, room)
        s = self.settings
        try:
            async with api.LiveKitAPI(http_url(s.livekit_url), s.livekit_api_key, s.livekit_api_secret) as lk:
                await asyncio.wait_for(lk.room.delete_room(api.DeleteRoomRequest(room=room)), 5)
        except Exception as e:  # the room empties and closes on its own; the session has ended either way
            log.warning("session %s: its room %s could not be closed: %s", session_id, room, e)

    async def health(self) -> dict[str, Any]:
        s = self.settings
        if not s.worker_enabled:
            return {"status": "disabled", "detail": "worker disabled (API only)"}
        if not s.livekit_url:
            return {"status": "not_configured", "detail": "no LiveKit URL"}
        checked_at, cached = self._probe
        if time.monotonic() - checked_at < 2.0:
            return cached
        try:
            async with (
                aiohttp.ClientSession() as http,
                http.get(http_url(s.livekit_url) + "/", timeout=aiohttp.ClientTimeout(total=2)) as r,
            ):
                reachable = r.status == 200
        except (TimeoutError, aiohttp.ClientError, OSError):
            reachable = False
        if not reachable:
            result = {"status": "unreachable", "detail": f"{s.livekit_url} does not answer; the worker keeps retrying"}
        elif not self.registered:
            result = {"status": "connecting", "detail": f"{s.livekit_url} reachable; worker registering"}
        else:
            jobs = len(self.server.active_jobs) if self.server else 0
            result = {"status": "ok", "detail": f"{s.livekit_url}; agent {s.agent_name!r}; {jobs} active calls"}
        self._probe = (time.monotonic(), result)
        return result

    async def run_until(self, stop: asyncio.Event) -> int:
        self._sweeper.start()
        if not self.settings.worker_enabled:
            await stop.wait()
            return 0
        self.server = self._build_server()
        if self.settings.job_executor == "hosted":
            self.job_hosts = JobHosts(
                mp_ctx=multiprocessing.get_context("forkserver"),  # LiveKit's, its preload set by the server's run
                calls_per_host=self.settings.calls_per_host,
                memory_mb=self.settings.job_host_memory_mb,
                memory_limit_mb=self.settings.job_host_memory_limit_mb,
                loop=asyncio.get_running_loop(),
                log_level=self.settings.log_level,
            )
            install(self.job_hosts)
        self._server_task = asyncio.create_task(self.server.run(devmode=False), name="agent-server")
        stop_task = asyncio.create_task(stop.wait())
        done, _ = await asyncio.wait({self._server_task, stop_task}, return_when=asyncio.FIRST_COMPLETED)
        if self._server_task in done:
            stop_task.cancel()
            exc = self._server_task.exception()
            log.critical("LiveKit worker stopped: %s", exc or "returned unexpectedly")
            return 1
        log.info("SIGTERM: draining active calls (up to %.0fs)", self.settings.drain_timeout_seconds)
        try:
            await asyncio.wait_for(self.server.drain(), self.settings.drain_timeout_seconds)
        except TimeoutError:
            log.warning("drain timed out; closing with calls still active")
        return 0

    async def sweep_once(self) -> int:
        """Close live sessions with no activity since the cutoff, except those whose job runs here right now
        (a long silence in a running call is not an orphan: it is touched instead)."""
        cutoff = to_iso(datetime.now(UTC) - timedelta(seconds=self.settings.session_orphan_seconds))
        running = self.running_job_ids()

        def close_stale(db: Any) -> int:
            n = 0
            for row in sessions_repo.stale_live_sessions(db, cutoff):
                if row["job_id"] is not None and row["job_id"] in running:
                    sessions_repo.touch(db, row["id"])
                elif sessions_repo.end(db, row["id"], reason="orphaned", ended_at=row["last_activity_at"]):
                    n += 1
            return n

        closed = await self.store.write(close_stale)
        if closed:
            log.warning("sweeper closed %d orphaned sessions (no activity since %s)", closed, cutoff)
        return closed

    async def aclose(self) -> None:
        await self._sweeper.stop()
        if self.server is not None:
            try:
                await self.server.aclose()
            except Exception as e:
                log.warning("worker close: %s", e)
        if self._tasks:  # calls whose job died, the server's close included, ended before the store closes
            await asyncio.wait(self._tasks, timeout=10)
        if self._server_task is not None and not self._server_task.done():
            self._server_task.cancel()
        if self.job_hosts is not None:
            await self.job_hosts.aclose()
            uninstall(self.job_hosts)
        if self.local_livekit is not None:
            await self.local_livekit.stop()
