"""The usage ledger: idempotent event inserts with rollups kept in the same transaction, and the cost reads.

Totals are integer sums of integer nano-USD, so a total always equals the sum of its events exactly."""

from __future__ import annotations

import json
from datetime import date, timedelta
from decimal import Decimal
from typing import Any

import sqlite_utils

from core.store.dialect import count_if, snapshot
from core.store.errors import ConflictError, NotFoundError
from core.store.timefmt import now_iso, to_iso
from pipelines import pricing

COLUMNS = (
    "id",
    "owner_id",
    "session_id",
    "agent_id",
    "provider",
    "model",
    "event_type",
    "token_kind",
    "quantity",
    "unit",
    "unit_cost",
    "total_cost_nanos",
    "priced",
    "price_version",
    "idempotency_key",
    "request_hash",
    "source",
    "occurred_at",
    "created_at",
)
# Rows per multi-row INSERT (19 columns each: well under SQLite's and PostgreSQL's bound-parameter limits).
_INSERT_CHUNK = 500


def row_values(e: dict[str, Any], request_hash: str, created_at: str | None = None) -> list[Any]:
    occurred = e["occurred_at"]
    return [
        e["id"],
        e["owner_id"],
        e["session_id"],
        e["agent_id"],
        e["provider"],
        e["model"],
        e["event_type"],
        e["token_kind"],
        str(e["quantity"]),
        e["unit"],
        None if e["unit_cost"] is None else str(e["unit_cost"]),
        e["total_cost_nanos"],
        int(e["total_cost_nanos"] is not None),
        e["price_version"],
        e["idempotency_key"],
        request_hash,
        e["source"],
        occurred if isinstance(occurred, str) else to_iso(occurred),
        created_at or now_iso(),
    ]


def _upsert(db: sqlite_utils.Database, target: str, key: str, rows: list[tuple[Any, ...]]) -> None:
    """Add ``rows``' totals (their last three columns) to those stored under the same key, or store them."""
    table = target.split(" ", 1)[0]
    totals = ", ".join(
        f"{c} = {table}.{c} + excluded.{c}" for c in ("total_cost_nanos", "event_count", "unpriced_count")
    )
    for n in range(0, len(rows), _INSERT_CHUNK):
        chunk = rows[n : n + _INSERT_CHUNK]
        one = "(" + ", ".join("?" * len(chunk[0])) + ")"
        db.execute(
            f"INSERT INTO {target} VALUES {', '.join([one] * len(chunk))} ON CONFLICT ({key}) DO UPDATE SET {totals}",
            [v for row in chunk for v in row],
        )


def record_events(db: sqlite_utils.Database, events: list[dict[str, Any]], request_hash: str = "") -> list[bool]:
    """Insert events; an event whose (owner, idempotency key) is already in the ledger is skipped. Returns which
    were new. The insert itself tells which rows it stored (``ON CONFLICT DO NOTHING RETURNING``), so no separate
    existence check is needed and a key stored by another node meanwhile counts once; rollups are aggregated per
    batch and upserted once per key."""
    if not events:
        return []
    existing: set[tuple[str, str]] = set()  # keys seen earlier in this batch
    pairs = [(e["owner_id"], e["idempotency_key"]) for e in events]
    candidates: list[tuple[int, dict[str, Any], list[Any]]] = []
    flags = [False] * len(events)
    created_at = now_iso()
    for i, (e, pair) in enumerate(zip(events, pairs, strict=True)):
        if pair in existing:
            continue
        existing.add(pair)  # a key repeated inside one batch counts once
        candidates.append((i, e, row_values(e, request_hash, created_at)))
    # Only the rows this insert really stored (RETURNING) count, in the flags and in the rollups: a key already in
    # the ledger, or stored by another node at the same moment, is skipped and counted once.
    stored: set[tuple[str, str]] = set()
    width = len(COLUMNS)
    for n in range(0, len(candidates), _INSERT_CHUNK):
        rows = candidates[n : n + _INSERT_CHUNK]
        values = ", ".join(["(" + ", ".join("?" * width) + ")"] * len(rows))
        stored.update(
            (owner, key)
            for owner, key in db.execute(
                f"INSERT INTO usage_events ({', '.join(COLUMNS)}) VALUES {values} ON CONFLICT DO NOTHING "
                "RETURNING owner_id, idempotency_key",
                [v for _, _, row in rows for v in row],
            )
        )
    rollups: dict[tuple[str, str, str, str, str], list[int]] = {}
    per_session: dict[str, list[Any]] = {}
    for i, e, row in candidates:
        if (e["owner_id"], e["idempotency_key"]) not in stored:
            continue
        flags[i] = True
        nanos = e["total_cost_nanos"] or 0
        unpriced = int(e["total_cost_nanos"] is None)
        agent = e["agent_id"] or ""
        acc = rollups.setdefault(
            (e["owner_id"], row[COLUMNS.index("occurred_at")][:10], agent, e["provider"], e["event_type"]), [0, 0, 0]
        )
        acc[0] += nanos
        acc[1] += 1
        acc[2] += unpriced
        if e["session_id"]:
            s = per_session.setdefault(e["session_id"], [e["owner_id"], agent, 0, 0, 0])
            s[2] += nanos
            s[3] += 1
            s[4] += unpriced
    # one multi-row upsert per table and chunk (each key once per statement): PostgreSQL pays a round trip per
    # statement, so one per rollup key made a batch of 50 events 59 statements
    _upsert(
        db,
        "cost_rollups (owner_id, day, agent_id, provider, event_type, total_cost_nanos, event_count, unpriced_count)",
        "owner_id, day, agent_id, provider, event_type",
        [(*k, *v) for k, v in rollups.items()],
    )
    _upsert(
        db,
        "session_costs (session_id, owner_id, agent_id, total_cost_nanos, event_count, unpriced_count)",
        "session_id",
        [(sid, *v) for sid, v in per_session.items()],
    )
    return flags


def record_api_event(
    db: sqlite_utils.Database, event: dict[str, Any], request_hash: str
) -> tuple[dict[str, Any], bool]:
    """One event from POST /api/usage/events. The same key with the same body returns the stored event; the same
    key with a different body is a conflict and writes nothing."""
    existing = list(
        db.query(
            "SELECT * FROM usage_events WHERE owner_id = ? AND idempotency_key = ?",
            [event["owner_id"], event["idempotency_key"]],
        )
    )
    if existing:
        if existing[0]["request_hash"] != request_hash:
            raise ConflictError(f"idempotency key {event['idempotency_key']!r} was already used with a different body")
        return existing[0], False
    record_events(db, [event], request_hash)
    return next(
        db.query(
            "SELECT * FROM usage_events WHERE owner_id = ? AND idempotency_key = ?",
            [event["owner_id"], event["idempotency_key"]],
        )
    ), True


def usd(nanos: int | None) -> float | None:
    return None if nanos is None else pricing.usd(nanos)


def event_wire(row: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": row["id"],
        "session_id": row["session_id"],
        "user_id": row["owner_id"],
        "tenant_id": row["owner_id"],
        "agent_id": row["agent_id"],
        "provider": row["provider"],
        "model": row["model"],
        "event_type": row["event_type"],
        "token_kind": row["token_kind"],
        "quantity": float(Decimal(row["quantity"])),
        "unit": row["unit"],
        "unit_cost": None if row["unit_cost"] is None else float(Decimal(row["unit_cost"])),
        "total_cost": usd(row["total_cost_nanos"]),
        "total_cost_nanos": row["total_cost_nanos"],
        "priced": bool(row["priced"]),
        "price_version": row["price_version"],
        "idempotency_key": row["idempotency_key"],
        "source": row["source"],
        "occurred_at": row["occurred_at"],
        "created_at": row["created_at"],
    }


# ---- reads ----


def summary(db: sqlite_utils.Database, owner_id: str, month_start: str) -> dict[str, Any]:
    by_provider: dict[str, int] = {}
    total = month = events = unpriced = 0
    for provider, nanos, month_nanos, n, u in db.execute(
        "SELECT provider, SUM(total_cost_nanos), SUM(CASE WHEN day >= ? THEN total_cost_nanos ELSE 0 END), "
        "SUM(event_count), SUM(unpriced_count) FROM cost_rollups WHERE owner_id = ? GROUP BY provider",
        [month_start, owner_id],
    ):
        by_provider[provider] = nanos
        total += nanos
        month += month_nanos
        events += n
        unpriced += u
    return {
        "total_cost": usd(total),
        "this_month_cost": usd(month),
        "by_provider": {p: usd(v) for p, v in sorted(by_provider.items())},
        "currency": "USD",
        "event_count": events,
        "unpriced_event_count": unpriced,
        "total_cost_nanos": total,
    }


def _bucket(day: str, period: str) -> str:
    d = date.fromisoformat(day)
    if period == "weekly":
        d = d - timedelta(days=d.weekday())
    elif period == "monthly":
        d = d.replace(day=1)
    return d.isoformat()


def timeline(
    db: sqlite_utils.Database, owner_id: str, period: str, start: str | None, end_exclusive: str | None
) -> list[dict[str, Any]]:
    where, args = ["owner_id = ?"], [owner_id]
    if start:
        where.append("day >= ?")
        args.append(start[:10])
    if end_exclusive:
        where.append("day < ?")
        args.append(end_exclusive[:10])
    points: dict[str, dict[str, int]] = {}
    for day, provider, nanos in db.execute(
        f"SELECT day, provider, SUM(total_cost_nanos) FROM cost_rollups WHERE {' AND '.join(where)} "
        "GROUP BY day, provider ORDER BY day",
        args,
    ):
        bucket = points.setdefault(_bucket(day, period), {})
        bucket[provider] = bucket.get(provider, 0) + nanos
    return [
        {
            "date": d,
            "total_cost": usd(sum(p.values())),
            "by_provider": {k: usd(v) for k, v in sorted(p.items())},
            "total_cost_nanos": sum(p.values()),
        }
        for d, p in sorted(points.items())
    ]


def by_agent(db: sqlite_utils.Database, owner_id: str) -> list[dict[str, Any]]:
    sessions = dict(
        db.execute(
            "SELECT agent_id, COUNT(*) FROM session_costs WHERE owner_id = ? GROUP BY agent_id", [owner_id]
        ).fetchall()
    )
    rows = db.execute(
        "SELECT r.agent_id, a.name, SUM(r.total_cost_nanos), SUM(r.event_count) FROM cost_rollups r "
        "LEFT JOIN agents a ON a.id = r.agent_id AND a.owner_id = r.owner_id "
        "WHERE r.owner_id = ? GROUP BY r.agent_id, a.name ORDER BY SUM(r.total_cost_nanos) DESC, r.agent_id",
        [owner_id],
    ).fetchall()
    return [
        {
            "agent_id": agent or None,
            "agent_name": name,
            "total_cost": usd(nanos),
            "session_count": sessions.get(agent, 0),
            "event_count": n,
            "total_cost_nanos": nanos,
        }
        for agent, name, nanos, n in rows
    ]


def session_breakdown(
    db: sqlite_utils.Database, owner_id: str, session_id: str, *, limit: int | None = None, offset: int = 0
) -> dict[str, Any]:
    """The session's totals over all its events, and ``limit`` of the events themselves (all if None) after the
    first ``offset``, oldest first."""
    if db.execute("SELECT 1 FROM sessions WHERE id = ? AND owner_id = ?", [session_id, owner_id]).fetchone() is None:
        raise NotFoundError(f"session {session_id} not found")
    # The session is the caller's (checked above), so its events are too: filtering on the session alone keeps
    # the planner on the session index. One read transaction, so the page and the totals see the same events.
    page = "" if limit is None else f" LIMIT {int(limit)} OFFSET {int(offset)}"
    if limit is None and offset:
        page = f" OFFSET {int(offset)}"
    with snapshot(db, "breakdown"):
        by_type: dict[str, int] = {}
        count = unpriced = 0
        for event_type, nanos, n, u in db.execute(
            f"SELECT event_type, COALESCE(SUM(total_cost_nanos), 0), COUNT(*), {count_if('priced = 0')} "
            "FROM usage_events WHERE session_id = ? GROUP BY event_type",
            [session_id],
        ):
            by_type[event_type] = nanos
            count += n
            unpriced += u
        rows = list(
            db.query(
                f"SELECT * FROM usage_events WHERE session_id = ? ORDER BY occurred_at, idempotency_key{page}",
                [session_id],
            )
        )
    total = sum(by_type.values())
    return {
        "session_id": session_id,
        "total_cost": usd(total),
        "events": [event_wire(r) for r in rows],
        "cost_by_type": {k: usd(v) for k, v in sorted(by_type.items())},
        "unpriced_event_count": unpriced,
        "total_cost_nanos": total,
        "events_total": count,
    }


def costs_since(db: sqlite_utils.Database, owner_id: str, day: str) -> int:
    row = db.execute(
        "SELECT COALESCE(SUM(total_cost_nanos), 0) FROM cost_rollups WHERE owner_id = ? AND day >= ?", [owner_id, day]
    ).fetchone()
    return int(row[0])


def request_hash(body: dict[str, Any]) -> str:
    import hashlib

    return hashlib.sha256(json.dumps(body, sort_keys=True, default=str).encode()).hexdigest()
