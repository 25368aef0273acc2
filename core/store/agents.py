"""Agents repository: synchronous functions over a ``sqlite_utils.Database``, run on the store's threads.

Records are plain dicts in storage terms (snake_case columns, ``config`` parsed); the wire shapes of 001
(camelCase) and 002 (snake_case) are made from them in ``api/schemas/agents.py``."""

from __future__ import annotations

import json
import uuid
from typing import Any

import sqlite_utils

from core.jsondepth import load_stored
from core.store import clients, tenants
from core.store.dialect import lock_for_transaction
from core.store.dialect import marks as in_marks
from core.store.errors import (
    INTEGRITY_ERRORS,
    ConflictError,
    InvalidReferenceError,
    InvalidValueError,
    LimitError,
    NotFoundError,
)
from core.store.tenants import slugify
from core.store.timefmt import now_iso

# Per-agent settings kept in the ``config`` JSON column (its keys are storage keys, not a wire shape).
CONFIG_KEYS = (
    "voiceId",
    "sttModel",
    "llmModel",
    "ttsModel",
    "language",
    "fallbackSttProviders",
    "fallbackLlmProviders",
    "fallbackTtsProviders",
    "errorMessage",
    "voiceSettings",
    "campaign",
    # turn-taking (pipelines/config.py TurnTaking)
    "minEndpointingDelay",
    "maxEndpointingDelay",
    "interruptionMinWords",
    "interruptionMinDuration",
    "backchannelWords",
    "preemptiveGeneration",
    # what the LLM may call (core/tools.py); HTTP tools' header values sealed
    "tools",
    # the agent's own webhooks (core/webhooks.py)
    "contextWebhookUrl",
    "webhookUrl",
    # outbound calls: who answered (pipelines/config.py Voicemail)
    "voicemailDetection",
    "voicemailAction",
    "voicemailMessage",
    # call recordings (core/recordings.py): null leaves VOXARENA_RECORDING_DEFAULT
    "recordingEnabled",
    "recordingNotice",
)
# Failed post-call webhook deliveries in a row from which the agent's webhook shows as failing.
WEBHOOK_FAILING = 10
COLUMNS = (
    "name",
    "system_prompt",
    "stt_provider",
    "llm_provider",
    "tts_provider",
    "first_message",
    "first_message_mode",
    "slug",
    "description",
    "enabled",
    "client_id",
    "agent_type",
    "status",
    "context_data",
    "phone_number",
)
_LIVE = "deleted_at IS NULL"


def record(row: dict[str, Any], stats: tuple[int, int] | None = None) -> dict[str, Any]:
    out = dict(row)
    out["config"] = load_stored(row["config"], what=f"agent {row['id']}: config") or {}
    out["context_data"] = load_stored(row.get("context_data"), what=f"agent {row['id']}: contextData")
    out["enabled"] = bool(row.get("enabled", 1))
    calls, ms = stats or (0, 0)
    out["total_calls"] = calls
    out["total_minutes"] = round((ms or 0) / 60_000, 2)
    return out


def _stats(
    db: sqlite_utils.Database, owner_id: str, agent_id: str | None = None, agent_ids: list[str] | None = None
) -> dict[str, tuple[int, int]]:
    where, args = "owner_id = ? AND status != 'pending'", [owner_id]
    if agent_id is not None:
        agent_ids = [agent_id]
    if agent_ids is not None:
        where, args = where + f" AND agent_id IN ({in_marks(agent_ids)})", [*args, *agent_ids]
    return {
        r[0]: (r[1], r[2] or 0)
        for r in db.execute(
            f"SELECT agent_id, COUNT(*), SUM(duration_ms) FROM sessions WHERE {where} GROUP BY agent_id", args
        )
    }


def _storable(data: dict[str, Any]) -> dict[str, Any]:
    out = {k: data[k] for k in COLUMNS if k in data}
    if "context_data" in out:
        out["context_data"] = None if out["context_data"] is None else json.dumps(out["context_data"])
    if "enabled" in out:
        out["enabled"] = int(bool(out["enabled"]))
    return out


def _unique_slug(db: sqlite_utils.Database, owner_id: str, base: str, *, exclude: str | None = None) -> str:
    taken = {
        r[0]
        for r in db.execute(
            f"SELECT slug FROM agents WHERE owner_id = ? AND {_LIVE} AND id IS DISTINCT FROM ? "
            "AND (slug = ? OR slug LIKE ?)",
            [owner_id, exclude, base, base + "-%"],
        )
    }
    slug, n = base, 2
    while slug in taken:
        slug, n = f"{base}-{n}", n + 1
    return slug


def _check_client(db: sqlite_utils.Database, owner_id: str, data: dict[str, Any]) -> None:
    client_id = data.get("client_id")
    if client_id is not None and not clients.exists(db, owner_id, client_id):
        raise InvalidReferenceError(f"body clientId: client {client_id} not found")


def _check_agent_limit(db: sqlite_utils.Database, owner_id: str) -> None:
    lock_for_transaction(db, f"agent-limit:{owner_id}")  # another node may be creating one now
    limit = (tenants.find(db, owner_id) or {}).get("max_agents")
    if limit is not None and count(db, owner_id) >= limit:
        raise LimitError(f"the tenant's limit of {limit} agents is reached", kind="tenant_limit")


def create(db: sqlite_utils.Database, owner_id: str, data: dict[str, Any]) -> dict[str, Any]:
    """``data`` in storage terms: COLUMNS plus CONFIG_KEYS. A slug given is kept (409 if taken), else one is
    made from the name."""
    _check_agent_limit(db, owner_id)
    _check_client(db, owner_id, data)
    now = now_iso()
    row = {
        "id": str(uuid.uuid4()),
        "owner_id": owner_id,
        "config": json.dumps({k: data.get(k) for k in CONFIG_KEYS if data.get(k) is not None}),
        "created_at": now,
        "updated_at": now,
        **_storable(data),
    }
    row["first_message_mode"] = row.get("first_message_mode") or "assistant_waits"
    if not row.get("slug"):
        row["slug"] = _unique_slug(db, owner_id, slugify(row["name"]))
    cols = ", ".join(row)
    try:
        db.execute(f"INSERT INTO agents ({cols}) VALUES ({', '.join('?' * len(row))})", list(row.values()))
    except INTEGRITY_ERRORS as e:
        if "slug" in str(e):
            raise ConflictError(f"slug {row['slug']!r} is taken by another agent") from None
        raise
    return get(db, owner_id, row["id"])


def get_row(db: sqlite_utils.Database, owner_id: str, agent_id: str) -> dict[str, Any]:
    rows = list(db.query(f"SELECT * FROM agents WHERE id = ? AND owner_id = ? AND {_LIVE}", [agent_id, owner_id]))
    if not rows:
        raise NotFoundError(f"agent {agent_id} not found")
    return rows[0]


def get(db: sqlite_utils.Database, owner_id: str, agent_id: str) -> dict[str, Any]:
    return record(get_row(db, owner_id, agent_id), _stats(db, owner_id, agent_id).get(agent_id))


def get_by_slug(db: sqlite_utils.Database, owner_id: str, slug: str) -> dict[str, Any]:
    rows = list(db.query(f"SELECT * FROM agents WHERE owner_id = ? AND slug = ? AND {_LIVE}", [owner_id, slug]))
    if not rows:
        raise NotFoundError(f"agent {slug!r} not found")
    return record(rows[0], _stats(db, owner_id, rows[0]["id"]).get(rows[0]["id"]))


def get_any_owner(db: sqlite_utils.Database, agent_id: str) -> dict[str, Any]:
    """For the worker: the job's dispatch metadata names the agent, and the owner comes with the row."""
    rows = list(db.query("SELECT * FROM agents WHERE id = ?", [agent_id]))
    if not rows:
        raise NotFoundError(f"agent {agent_id} not found")
    return rows[0]


def _filters(
    owner_id: str,
    status: str | None = None,
    agent_type: str | None = None,
    client_id: str | None = None,
    enabled: bool | None = None,
) -> tuple[str, list[Any]]:
    where, args = ["owner_id = ?", _LIVE], list[Any]([owner_id])
    for column, value in (("status", status), ("agent_type", agent_type), ("client_id", client_id)):
        if value is not None:
            where.append(f"{column} = ?")
            args.append(value)
    if enabled is not None:
        where.append("enabled = ?")
        args.append(int(enabled))
    return " AND ".join(where), args


def list_(
    db: sqlite_utils.Database, owner_id: str, *, limit: int | None = None, offset: int = 0, **filters: Any
) -> list[dict[str, Any]]:
    """Newest first; ``filters``: status, agent_type, client_id, enabled. ``limit`` None: every one."""
    where, args = _filters(owner_id, **filters)
    page = "" if limit is None else " LIMIT ? OFFSET ?"
    rows = list(
        db.query(
            f"SELECT * FROM agents WHERE {where} ORDER BY created_at DESC, id{page}",
            [*args, *([limit, offset] if limit is not None else [])],
        )
    )
    stats = _stats(db, owner_id, agent_ids=[r["id"] for r in rows]) if rows else {}
    return [record(r, stats.get(r["id"])) for r in rows]


def count_listed(db: sqlite_utils.Database, owner_id: str, **filters: Any) -> int:
    where, args = _filters(owner_id, **filters)
    return int(db.execute(f"SELECT COUNT(*) FROM agents WHERE {where}", args).fetchone()[0])


def _check_config(config: dict[str, Any]) -> None:
    """An update may send one setting of a pair alone: what it leaves stored must still make sense (the delays in
    order, a message to leave on a voicemail)."""
    low, high = config.get("minEndpointingDelay"), config.get("maxEndpointingDelay")
    if low is not None and high is not None and low > high:
        raise InvalidValueError(f"minEndpointingDelay ({low:g} s) cannot be above maxEndpointingDelay ({high:g} s)")
    if config.get("voicemailAction") == "leave_message" and not config.get("voicemailMessage"):
        raise InvalidValueError("voicemailAction leave_message needs a voicemailMessage")


def update(db: sqlite_utils.Database, owner_id: str, agent_id: str, changes: dict[str, Any]) -> dict[str, Any]:
    row = get_row(db, owner_id, agent_id)
    _check_client(db, owner_id, changes)
    sets = _storable(changes)
    config_changes = {k: changes[k] for k in CONFIG_KEYS if k in changes}
    if config_changes:
        config = json.loads(row["config"] or "{}")
        config.update(config_changes)
        _check_config(config)
        sets["config"] = json.dumps({k: v for k, v in config.items() if v is not None})
    if "slug" in sets and not sets["slug"]:
        sets["slug"] = _unique_slug(db, owner_id, slugify(sets.get("name") or row["name"]), exclude=agent_id)
    sets["updated_at"] = now_iso()
    assignments = ", ".join(f"{c} = ?" for c in sets)
    try:
        db.execute(
            f"UPDATE agents SET {assignments} WHERE id = ? AND owner_id = ?", [*sets.values(), agent_id, owner_id]
        )
    except INTEGRITY_ERRORS as e:
        if "slug" in str(e):
            raise ConflictError(f"slug {sets['slug']!r} is taken by another agent") from None
        raise
    return get(db, owner_id, agent_id)


def delete(db: sqlite_utils.Database, owner_id: str, agent_id: str) -> None:
    """Soft delete: sessions and the cost ledger keep pointing at the agent (and its name) after it is gone."""
    get_row(db, owner_id, agent_id)
    db.execute("UPDATE agents SET deleted_at = ? WHERE id = ? AND owner_id = ?", [now_iso(), agent_id, owner_id])


def count(db: sqlite_utils.Database, owner_id: str) -> int:
    return int(db.execute(f"SELECT COUNT(*) FROM agents WHERE owner_id = ? AND {_LIVE}", [owner_id]).fetchone()[0])
