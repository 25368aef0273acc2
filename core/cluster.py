"""One ``voxarena serve`` process as a node of a cluster sharing one store (PostgreSQL; on SQLite, the one node).

- The node registers at start, beats every ``VOXARENA_NODE_HEARTBEAT_SECONDS`` and records its stop after its
  calls have drained (SIGTERM).
- A node that stops beating for ``VOXARENA_NODE_LOST_SECONDS`` is lost (SIGKILL, a crash, a cut network): the node
  holding the ``node-reaper`` lease ends each of its live calls as ``worker_lost`` with the reason in words, closes
  the call's room so the caller is not left in silence, and the calls' callbacks go out once (they are rows of the
  store, claimed by whichever node sends them).
- ``Lease`` lets a periodic sweeper run on one node at a time and move to another when its holder dies.
"""

from __future__ import annotations

import logging
import os
import socket
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from core.periodic import Periodic
from core.store import cluster as repo
from core.store import sessions as sessions_repo
from core.store.db import Store
from core.store.timefmt import to_iso

log = logging.getLogger("voxarena.cluster")

WORKER_LOST = "worker_lost"


def default_node_id() -> str:
    """host name, process id and a short random part: unique across restarts of the same process id."""
    return f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"


def _later(seconds: float) -> str:
    return to_iso(datetime.now(UTC) + timedelta(seconds=seconds))


@dataclass
class Lease:
    """One named piece of work held by one node until ``expires_at``; renewed by its holder each time it runs."""

    store: Store
    name: str
    holder: str
    ttl_seconds: float

    async def take(self) -> bool:
        until = _later(self.ttl_seconds)
        return bool(await self.store.write(lambda db: repo.acquire(db, self.name, self.holder, expires_at=until)))

    async def release(self) -> None:
        await self.store.write(repo.release, self.name, self.holder)


class ClusterNode:
    def __init__(
        self,
        store: Store,
        node_id: str,
        *,
        heartbeat_seconds: float,
        lost_seconds: float,
        close_room: Callable[[dict[str, Any]], Awaitable[None]] | None = None,
        open_slots: Callable[[], int] | None = None,
    ) -> None:
        self.store = store
        self.id = node_id
        self.heartbeat_seconds = heartbeat_seconds
        self.open_slots = open_slots  # how many more calls this node's worker takes now (None: no worker)
        self.lost_seconds = lost_seconds
        self.close_room = close_room
        self.draining = False
        self.declared_lost = False
        self._beat = Periodic("node-heartbeat", heartbeat_seconds, self.beat_once, log)
        self._reaper = Periodic(
            "node-reaper",
            heartbeat_seconds,
            self.reap_once,
            log,
            lease=self.lease("node-reaper", max(3 * heartbeat_seconds, 5.0)),
        )

    def lease(self, name: str, ttl_seconds: float) -> Lease:
        return Lease(self.store, name, self.id, ttl_seconds)

    async def start(self) -> None:
        host, pid = socket.gethostname(), os.getpid()
        await self.store.write(lambda db: repo.register(db, self.id, hostname=host, pid=pid))
        log.info("node %s joined the cluster (store %s)", self.id, self.store.describe)
        self._beat.start()
        self._reaper.start()

    async def stop(self, reason: str = "stopped") -> None:
        await self._reaper.stop()
        await self._beat.stop()
        try:
            await self.store.write(lambda db: repo.stopped(db, self.id, reason=reason))
        except Exception as e:  # the store may be gone at shutdown; the others will see the beat stop
            log.warning("node %s: could not record its stop: %s", self.id, e)

    async def beat_once(self) -> None:
        draining = self.draining
        slots = self.open_slots() if self.open_slots is not None else 0
        alive = await self.store.write(lambda db: repo.beat(db, self.id, draining=draining, open_slots=slots))
        if not alive and not self.declared_lost:
            self.declared_lost = True
            log.error(
                "node %s was declared lost by another node (its beat stopped for %.0f s): its calls were ended",
                self.id,
                self.lost_seconds,
            )

    async def reap_once(self) -> int:
        """End the live calls of every lost node; returns how many calls were ended."""
        cutoff = to_iso(datetime.now(UTC) - timedelta(seconds=self.lost_seconds))
        ended = 0
        for node in await self.store.read(repo.lost, cutoff):
            error = (
                f"the voxarena node running this call ({node['id']}) stopped answering: no heartbeat since "
                f"{node['heartbeat_at']}; the call was cut off"
            )

            def end_calls(db: Any, node_id: str = node["id"], error: str = error) -> list[dict[str, Any]] | None:
                if not repo.stopped(db, node_id, reason="lost"):
                    return None  # another node reaped it first
                rows = repo.live_sessions(db, node_id)
                for row in rows:
                    sessions_repo.end(db, row["id"], reason=WORKER_LOST, error=error)
                return rows

            rows = await self.store.write(end_calls)
            if rows is None:
                continue
            log.error("node %s is lost (%s); %d of its calls ended as %s", node["id"], error, len(rows), WORKER_LOST)
            for row in rows:
                if self.close_room is not None and row.get("room_name"):
                    try:
                        await self.close_room(row)
                    except Exception as e:
                        log.warning("session %s: could not close room %s: %s", row["id"], row["room_name"], e)
            ended += len(rows)
        return ended
