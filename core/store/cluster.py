"""The nodes of a cluster and the leases they take turns with (both in the store, so that every node sees them).

A node is one ``voxarena serve`` process: it registers at start, beats every few seconds and says when it stops.
A node whose beat is older than the loss threshold is lost: a surviving node ends its calls (``worker_lost``).
A lease names one piece of background work that must run on one node at a time (the sweepers); its holder renews it
each time it runs, and any node takes it over once it has expired."""

from __future__ import annotations

from typing import Any

import sqlite_utils

from core.store.timefmt import now_iso


def register(db: sqlite_utils.Database, node_id: str, *, hostname: str, pid: int) -> None:
    now = now_iso()
    db.execute(
        "INSERT INTO nodes (id, hostname, pid, started_at, heartbeat_at) VALUES (?, ?, ?, ?, ?) "
        "ON CONFLICT (id) DO UPDATE SET hostname = excluded.hostname, pid = excluded.pid, "
        "started_at = excluded.started_at, heartbeat_at = excluded.heartbeat_at, draining = 0, stopped_at = NULL, "
        "stop_reason = NULL",
        [node_id, hostname, pid, now, now],
    )


def beat(db: sqlite_utils.Database, node_id: str, *, draining: bool = False, open_slots: int = 0) -> bool:
    """The node is alive, with ``open_slots`` calls more that its worker can take now; False when another node has
    already declared it lost (it must then stop taking calls: its calls were ended)."""
    cur = db.execute(
        "UPDATE nodes SET heartbeat_at = ?, draining = ?, open_slots = ? WHERE id = ? AND stopped_at IS NULL",
        [now_iso(), int(draining), 0 if draining else max(0, open_slots), node_id],
    )
    return cur.rowcount > 0


def open_slots_elsewhere(db: sqlite_utils.Database, node_id: str, fresh_since: str) -> int:
    """Calls the other live nodes' workers said they could take at their last beat (since ``fresh_since``)."""
    row = db.execute(
        "SELECT COALESCE(SUM(open_slots), 0) FROM nodes WHERE id != ? AND stopped_at IS NULL AND draining = 0 "
        "AND heartbeat_at >= ?",
        [node_id, fresh_since],
    ).fetchone()
    return int(row[0]) if row else 0


def stopped(db: sqlite_utils.Database, node_id: str, *, reason: str, at: str | None = None) -> bool:
    cur = db.execute(
        "UPDATE nodes SET stopped_at = ?, stop_reason = ? WHERE id = ? AND stopped_at IS NULL",
        [at or now_iso(), reason, node_id],
    )
    return cur.rowcount > 0


def lost(db: sqlite_utils.Database, cutoff: str) -> list[dict[str, Any]]:
    """Nodes that have not stopped and have not beaten since ``cutoff``."""
    return list(db.query("SELECT * FROM nodes WHERE stopped_at IS NULL AND heartbeat_at < ? ORDER BY id", [cutoff]))


def live_sessions(db: sqlite_utils.Database, node_id: str) -> list[dict[str, Any]]:
    return list(db.query("SELECT * FROM sessions WHERE node_id = ? AND status != 'ended'", [node_id]))


def listing(db: sqlite_utils.Database) -> list[dict[str, Any]]:
    return list(db.query("SELECT * FROM nodes ORDER BY started_at DESC, id"))


def acquire(db: sqlite_utils.Database, name: str, holder: str, *, expires_at: str) -> bool:
    """Take or renew the lease ``name`` until ``expires_at``; False while another holder's lease runs."""
    row = db.execute(
        "INSERT INTO leases (name, holder, expires_at) VALUES (?, ?, ?) ON CONFLICT (name) DO UPDATE SET "
        "holder = excluded.holder, expires_at = excluded.expires_at "
        "WHERE leases.holder = excluded.holder OR leases.expires_at < ? RETURNING holder",
        [name, holder, expires_at, now_iso()],
    ).fetchone()
    return row is not None


def release(db: sqlite_utils.Database, name: str, holder: str) -> None:
    db.execute("DELETE FROM leases WHERE name = ? AND holder = ?", [name, holder])


def holder(db: sqlite_utils.Database, name: str) -> str | None:
    row = db.execute("SELECT holder FROM leases WHERE name = ? AND expires_at >= ?", [name, now_iso()]).fetchone()
    return None if row is None else str(row[0])
