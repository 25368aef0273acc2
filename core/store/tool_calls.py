"""The tool calls of a session (an agent's HTTP tools and its call tools), each recorded when the LLM makes it and
again when it ends, with a live event each time (``tool.called``, ``tool.result``) on the session's stream."""

from __future__ import annotations

import json
from typing import Any

import sqlite_utils

from core.store.dialect import marks as in_marks
from core.store.errors import NotFoundError
from core.store.events import stream_event
from core.store.timefmt import now_iso

# What a call's record keeps of a tool's arguments and result (the LLM is given up to the tool's own cap).
MAX_STORED_CHARS = 4_000
STATUSES = ("running", "ok", "error", "timeout", "refused")


def _capped(text: str) -> str:
    return text if len(text) <= MAX_STORED_CHARS else text[:MAX_STORED_CHARS] + "…"


def _session(db: sqlite_utils.Database, session_id: str) -> tuple[str, str]:
    row = db.execute("SELECT owner_id, channel FROM sessions WHERE id = ?", [session_id]).fetchone()
    if row is None:
        raise NotFoundError(f"session {session_id} not found")
    return row[0], row[1]


def started(
    db: sqlite_utils.Database,
    *,
    session_id: str,
    call_key: str,
    name: str,
    kind: str,
    arguments: dict[str, Any],
    at: str | None = None,
) -> bool:
    """The LLM called a tool; a retried write of the same call is a no-op (False)."""
    owner, channel = _session(db, session_id)
    at = at or now_iso()
    args = _capped(json.dumps(arguments, ensure_ascii=False, sort_keys=True))
    cur = db.execute(
        "INSERT INTO tool_calls (session_id, owner_id, call_key, name, kind, arguments, status, started_at) "
        "VALUES (?,?,?,?,?,?,'running',?) ON CONFLICT DO NOTHING",
        [session_id, owner, call_key, name, kind, args, at],
    )
    if cur.rowcount:
        stream_event(
            db, owner, session_id, channel, "tool.called", {"id": call_key, "name": name, "arguments": arguments}
        )
    return cur.rowcount > 0


def finished(
    db: sqlite_utils.Database,
    *,
    session_id: str,
    call_key: str,
    status: str,
    result: str,
    latency_ms: int,
    http_status: int | None = None,
) -> None:
    """The tool's outcome (``ok``, ``error``, ``timeout``, ``refused``) and what it returned."""
    if status not in STATUSES[1:]:
        raise ValueError(f"not a tool call outcome: {status}")
    owner, channel = _session(db, session_id)
    cur = db.execute(
        "UPDATE tool_calls SET status = ?, result = ?, latency_ms = ?, http_status = ?, ended_at = ? "
        "WHERE session_id = ? AND call_key = ? AND status = 'running'",
        [status, _capped(result), latency_ms, http_status, now_iso(), session_id, call_key],
    )
    if cur.rowcount:
        row = db.execute("SELECT name FROM tool_calls WHERE session_id = ? AND call_key = ?", [session_id, call_key])
        payload = {
            "id": call_key,
            "name": row.fetchone()[0],
            "status": status,
            "latencyMs": latency_ms,
            "httpStatus": http_status,
            "result": _capped(result),
        }
        stream_event(db, owner, session_id, channel, "tool.result", payload)


def record(row: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": row["call_key"],
        "name": row["name"],
        "type": row["kind"],
        "arguments": json.loads(row["arguments"]) if row["arguments"].startswith("{") else row["arguments"],
        "status": row["status"],
        "http_status": row["http_status"],
        "latency_ms": row["latency_ms"],
        "result": row["result"],
        "started_at": row["started_at"],
        "ended_at": row["ended_at"],
    }


def by_session(db: sqlite_utils.Database, session_ids: list[str]) -> dict[str, list[dict[str, Any]]]:
    out: dict[str, list[dict[str, Any]]] = {sid: [] for sid in session_ids}
    if not session_ids:
        return out
    for row in db.query(
        f"SELECT * FROM tool_calls WHERE session_id IN ({in_marks(session_ids)}) ORDER BY session_id, started_at, id",
        session_ids,
    ):
        out[row["session_id"]].append(record(row))
    return out
