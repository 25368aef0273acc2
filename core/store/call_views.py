"""The calls of a tenant now and before, as Phony's views list them (``/api/calls/active``, ``/history``), and the
context a live call carries (``PUT /api/calls/{call_sid}/context``): sessions on a voice or relay channel, with their
cost."""

from __future__ import annotations

import json
from typing import Any

import sqlite_utils

from core.jsondepth import load_stored
from core.store import events, sessions
from core.store.errors import NotFoundError

_CALL_COLUMNS = (
    "SELECT s.id, s.agent_id, s.direction, s.status, s.call_status, s.started_at, s.ended_at, "
    "s.duration_ms, s.end_reason, s.error, s.context, s.outbound_phone_number, s.from_number, s.to_number, "
    "c.total_cost_nanos, "
    "c.unpriced_count FROM sessions s LEFT JOIN session_costs c ON c.session_id = s.id"
)


def _call_record(row: dict[str, Any]) -> dict[str, Any]:
    return {**row, "context": load_stored(row["context"], what=f"call {row['id']}: context")}


def active_calls(db: sqlite_utils.Database, owner_id: str) -> list[dict[str, Any]]:
    rows = db.query(
        f"{_CALL_COLUMNS} WHERE s.owner_id = ? AND s.status = 'active' AND s.channel != 'text' "
        f"ORDER BY s.started_at DESC, s.id",
        [owner_id],
    )
    return [_call_record(r) for r in rows]


def call_history(
    db: sqlite_utils.Database,
    owner_id: str,
    *,
    agent_id: str | None,
    start: str | None,
    end_exclusive: str | None,
    limit: int,
    offset: int,
) -> dict[str, Any]:
    where, args = ["s.owner_id = ?", "s.status = 'ended'", "s.channel != 'text'"], [owner_id]
    for clause, value in (
        ("s.agent_id = ?", agent_id),
        ("s.started_at >= ?", start),
        ("s.started_at < ?", end_exclusive),
    ):
        if value is not None:
            where.append(clause)
            args.append(value)
    clause = " AND ".join(where)
    total = db.execute(f"SELECT COUNT(*) FROM sessions s WHERE {clause}", args).fetchone()[0]
    rows = db.query(
        f"{_CALL_COLUMNS} WHERE {clause} ORDER BY s.started_at DESC, s.id LIMIT ? OFFSET ?", [*args, limit, offset]
    )
    return {"calls": [_call_record(r) for r in rows], "total": total}


def merge_context(db: sqlite_utils.Database, owner_id: str, session_id: str, context: dict[str, Any]) -> dict[str, Any]:
    """Merge into a live call's context (keys given replace those stored; a null value removes its key)."""
    row = sessions.get_row(db, session_id, owner_id)
    if row["status"] != "active":
        raise NotFoundError(f"call {session_id} is not live")
    merged = json.loads(row["context"]) if row["context"] else {}
    for key, value in context.items():
        if value is None:
            merged.pop(key, None)
        else:
            merged[key] = value
    db.execute("UPDATE sessions SET context = ? WHERE id = ?", [json.dumps(merged), session_id])
    events.stream_event(db, owner_id, session_id, row["channel"], "context.updated", {"context": merged})
    return {**row, "context": merged}
