"""The live event stream's fan-out: one owned task tails the store's ``live_events`` table (written by whichever
process made the change: a job process, this API, another machine on the same database) and hands each event to
the subscribers that may see it.

The task polls only while someone listens. Every subscriber has a bounded queue; the tail never waits for one: a
subscriber whose queue is full is dropped (its connection is then closed as a slow consumer), so a stalled reader
can never hold up the stream, let alone a call.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from core.cluster import Lease
from core.periodic import Periodic, cancel_and_wait
from core.store import events as repo
from core.store.db import Store
from core.store.timefmt import to_iso

log = logging.getLogger("voxarena.events")

POLL_SECONDS = 0.1
BATCH = 500


class TooManyConnections(Exception):
    def __init__(self, limit: int) -> None:
        super().__init__(f"at most {limit} concurrent event-stream connections per credential")
        self.limit = limit


@dataclass(eq=False)
class Subscriber:
    owner_id: str
    call_sid: str | None
    queue: asyncio.Queue[dict[str, Any]]
    after: int  # events up to this id happened before it subscribed
    dropped: asyncio.Event = field(default_factory=asyncio.Event)
    reason: str = ""  # why it was dropped: "slow" (its queue overflowed) or "shutdown"

    def wants(self, row: dict[str, Any]) -> bool:
        return (
            row["id"] > self.after
            and row["owner_id"] == self.owner_id
            and (self.call_sid is None or row["call_sid"] == self.call_sid)
        )

    async def next(self) -> dict[str, Any] | None:
        """The next event, or None once dropped as a slow consumer."""
        if self.dropped.is_set():
            return None
        if not self.queue.empty():
            return self.queue.get_nowait()
        get = asyncio.ensure_future(self.queue.get())
        dropped = asyncio.ensure_future(self.dropped.wait())
        try:
            await asyncio.wait((get, dropped), return_when=asyncio.FIRST_COMPLETED)
        finally:
            for t in (get, dropped):
                t.cancel()
        if get.done() and not get.cancelled():
            return get.result()
        return None


class EventHub:
    def __init__(
        self,
        store: Store,
        *,
        queue_size: int,
        max_connections: int,
        retention_seconds: float,
        prune_interval: float = 600.0,
        poll_seconds: float = POLL_SECONDS,
        to_wire: Callable[[dict[str, Any]], dict[str, Any]] = dict,
        prune_lease: Lease | None = None,
    ) -> None:
        self.store = store
        self.queue_size = queue_size
        self.max_connections = max_connections
        self.retention_seconds = retention_seconds
        self.poll_seconds = poll_seconds
        self.to_wire = to_wire
        # A batch fits twice in a queue: between two reads (each an await) a consumer that keeps up empties its
        # queue, so a burst of events drops only those that truly fall behind.
        self.batch = max(1, min(BATCH, queue_size // 2))
        self.subscribers: set[Subscriber] = set()
        self.connections: dict[str, int] = {}  # credential -> open connections
        self.dropped_count = 0
        self._cursor: int | None = None  # None while nobody listens
        self._listening = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._pruner = Periodic("live-events-prune", prune_interval, self.prune_once, log, lease=prune_lease)

    # ---- lifecycle (owned by the app's cleanup_ctx) ----
    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run(), name="live-events-tail")
        self._pruner.start()

    async def stop(self) -> None:
        await self._pruner.stop()
        await cancel_and_wait(self._task)
        self._task = None
        self.close_all()

    def close_all(self) -> None:
        """The server is going away: every subscriber's connection is closed (on the app's shutdown, before
        aiohttp waits for open handlers)."""
        for sub in list(self.subscribers):
            self._drop(sub, "shutdown")

    # ---- connections ----
    def admit(self, credential: str) -> None:
        """Count a connection for this credential (an API key, or a user); raises beyond the limit. Synchronous, so
        two connections racing cannot both take the last place."""
        n = self.connections.get(credential, 0)
        if n >= self.max_connections:
            raise TooManyConnections(self.max_connections)
        self.connections[credential] = n + 1

    def release(self, credential: str) -> None:
        n = self.connections.get(credential, 0) - 1
        if n > 0:
            self.connections[credential] = n
        else:
            self.connections.pop(credential, None)

    async def subscribe(self, owner_id: str, call_sid: str | None) -> Subscriber:
        """From now on: events already stored are not sent (``GET /api/calls/{call_sid}/events`` lists them)."""
        start = await self.store.read(repo.last_id)
        sub = Subscriber(owner_id, call_sid, asyncio.Queue(self.queue_size), after=start)
        if self._cursor is None or not self.subscribers:
            self._cursor = start
        self.subscribers.add(sub)
        self._listening.set()
        return sub

    def unsubscribe(self, sub: Subscriber) -> None:
        self.subscribers.discard(sub)
        if not self.subscribers:
            self._listening.clear()
            self._cursor = None

    def _drop(self, sub: Subscriber, reason: str) -> None:
        sub.reason = sub.reason or reason
        sub.dropped.set()
        self.unsubscribe(sub)

    # ---- the tail ----
    async def _run(self) -> None:
        while True:
            await self._listening.wait()
            try:
                more = await self.poll_once()
            except Exception:
                log.exception("reading live events failed")
                more = False
            if not more:
                await asyncio.sleep(self.poll_seconds)

    async def poll_once(self) -> bool:
        """Fan out what was stored since the last poll; True if a full batch came (more may be waiting)."""
        cursor = self._cursor
        if cursor is None:
            return False
        rows = await self.store.read(repo.after, cursor, self.batch)
        if self._cursor is None:  # everyone left while we read
            return False
        for row in rows:
            event = None
            for sub in list(self.subscribers):
                if not sub.wants(row):
                    continue
                event = event or self.to_wire(row)
                try:
                    sub.queue.put_nowait(event)
                except asyncio.QueueFull:
                    self.dropped_count += 1
                    log.warning(
                        "dropping a slow event-stream consumer of tenant %s (%d events queued)",
                        sub.owner_id,
                        sub.queue.qsize(),
                    )
                    self._drop(sub, "slow")
        if rows and self.subscribers:
            self._cursor = rows[-1]["id"]
        return len(rows) == self.batch

    async def prune_once(self) -> int:
        cutoff = to_iso(datetime.now(UTC) - timedelta(seconds=self.retention_seconds))
        removed = await self.store.write(repo.prune, cutoff)
        if removed:
            log.info("pruned %d live events older than %s", removed, cutoff)
        return removed
