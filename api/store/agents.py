"""Agents repository: synchronous functions over a ``sqlite_utils.Database``, run on the store's threads."""

from __future__ import annotations

import json
import uuid
from typing import Any

import sqlite_utils

from ..errors import NotFound
from .timefmt import now_iso

CONFIG_KEYS = ("voiceId", "sttModel", "llmModel", "ttsModel", "language", "fallbackSttProviders",
               "fallbackLlmProviders", "fallbackTtsProviders", "errorMessage")
LIST_KEYS = ("fallbackSttProviders", "fallbackLlmProviders", "fallbackTtsProviders")
COLUMNS = {
    "name": "name",
    "systemPrompt": "system_prompt",
    "sttProvider": "stt_provider",
    "llmProvider": "llm_provider",
    "ttsProvider": "tts_provider",
    "firstMessage": "first_message",
    "firstMessageMode": "first_message_mode",
}


def to_wire(row: dict[str, Any]) -> dict[str, Any]:
    config = json.loads(row["config"] or "{}")
    out = {
        "id": row["id"],
        "name": row["name"],
        "systemPrompt": row["system_prompt"],
        "sttProvider": row["stt_provider"],
        "llmProvider": row["llm_provider"],
        "ttsProvider": row["tts_provider"],
        "firstMessage": row["first_message"],
        "firstMessageMode": row["first_message_mode"],
        "createdAt": row["created_at"],
        "updatedAt": row["updated_at"],
    }
    for key in CONFIG_KEYS:
        out[key] = config.get(key)
    for key in LIST_KEYS:
        out[key] = list(out[key] or [])
    return out


def create(db: sqlite_utils.Database, owner_id: str, data: dict[str, Any]) -> dict[str, Any]:
    now = now_iso()
    row = {
        "id": str(uuid.uuid4()),
        "owner_id": owner_id,
        "config": json.dumps({k: data.get(k) for k in CONFIG_KEYS if data.get(k) is not None}),
        "created_at": now,
        "updated_at": now,
    }
    for wire, col in COLUMNS.items():
        row[col] = data.get(wire)
    row["first_message_mode"] = row["first_message_mode"] or "assistant_waits"
    cols = ", ".join(row)
    db.execute(f"INSERT INTO agents ({cols}) VALUES ({', '.join('?' * len(row))})", list(row.values()))
    return to_wire(row)


def get_row(db: sqlite_utils.Database, owner_id: str, agent_id: str) -> dict[str, Any]:
    rows = list(
        db.query(
            "SELECT * FROM agents WHERE id = ? AND owner_id = ? AND deleted_at IS NULL", [agent_id, owner_id]
        )
    )
    if not rows:
        raise NotFound(f"agent {agent_id} not found")
    return rows[0]


def get(db: sqlite_utils.Database, owner_id: str, agent_id: str) -> dict[str, Any]:
    return to_wire(get_row(db, owner_id, agent_id))


def get_any_owner(db: sqlite_utils.Database, agent_id: str) -> dict[str, Any]:
    """For the worker: the job's dispatch metadata names the agent, and the owner comes with the row."""
    rows = list(db.query("SELECT * FROM agents WHERE id = ?", [agent_id]))
    if not rows:
        raise NotFound(f"agent {agent_id} not found")
    return rows[0]


def list_(db: sqlite_utils.Database, owner_id: str) -> dict[str, Any]:
    rows = list(
        db.query(
            "SELECT * FROM agents WHERE owner_id = ? AND deleted_at IS NULL ORDER BY created_at DESC, id",
            [owner_id],
        )
    )
    return {"agents": [to_wire(r) for r in rows], "total": len(rows)}


def update(db: sqlite_utils.Database, owner_id: str, agent_id: str, changes: dict[str, Any]) -> dict[str, Any]:
    row = get_row(db, owner_id, agent_id)
    sets: dict[str, Any] = {}
    for wire, col in COLUMNS.items():
        if wire in changes:
            sets[col] = changes[wire]
    config_changes = {k: changes[k] for k in CONFIG_KEYS if k in changes}
    if config_changes:
        config = json.loads(row["config"] or "{}")
        config.update(config_changes)
        sets["config"] = json.dumps({k: v for k, v in config.items() if v is not None})
    sets["updated_at"] = now_iso()
    assignments = ", ".join(f"{c} = ?" for c in sets)
    db.execute(
        f"UPDATE agents SET {assignments} WHERE id = ? AND owner_id = ?", [*sets.values(), agent_id, owner_id]
    )
    row.update(sets)
    return to_wire(row)


def delete(db: sqlite_utils.Database, owner_id: str, agent_id: str) -> None:
    """Soft delete: sessions and the cost ledger keep pointing at the agent (and its name) after it is gone."""
    get_row(db, owner_id, agent_id)
    db.execute("UPDATE agents SET deleted_at = ? WHERE id = ? AND owner_id = ?", [now_iso(), agent_id, owner_id])


def count(db: sqlite_utils.Database, owner_id: str) -> int:
    return db.execute(
        "SELECT COUNT(*) FROM agents WHERE owner_id = ? AND deleted_at IS NULL", [owner_id]
    ).fetchone()[0]
