"""Clients (Autonomite): a customer's site or app within a tenant, optionally with its own LiveKit server; agents
may belong to one. Secret settings arrive and leave this module already sealed (``secrets`` is opaque text)."""

from __future__ import annotations

import json
from typing import Any

import sqlite_utils

from core.store.dialect import json_text
from core.store.errors import INTEGRITY_ERRORS, ConflictError, NotFoundError
from core.store.timefmt import now_iso


def record(row: dict[str, Any]) -> dict[str, Any]:
    out = dict(row)
    out["settings"] = json.loads(row["settings"] or "{}")
    out["active"] = bool(row["active"])
    return out


def exists(db: sqlite_utils.Database, owner_id: str, client_id: str) -> bool:
    row = db.execute("SELECT 1 FROM clients WHERE id = ? AND owner_id = ?", [client_id, owner_id]).fetchone()
    return row is not None


def get(db: sqlite_utils.Database, owner_id: str, client_id: str) -> dict[str, Any]:
    rows = list(db.query("SELECT * FROM clients WHERE owner_id = ? AND id = ?", [owner_id, client_id]))
    if not rows:
        raise NotFoundError(f"client {client_id} not found")
    return record(rows[0])


def list_(db: sqlite_utils.Database, owner_id: str) -> list[dict[str, Any]]:
    return [record(r) for r in db.query("SELECT * FROM clients WHERE owner_id = ? ORDER BY created_at, id", [owner_id])]


def create(db: sqlite_utils.Database, owner_id: str, data: dict[str, Any]) -> dict[str, Any]:
    """``data``: id, name, domain, active, settings (plain, non-secret), secrets (sealed text or None)."""
    now = now_iso()
    try:
        db.execute(
            "INSERT INTO clients (owner_id, id, name, domain, active, settings, secrets, created_at, "
            "updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            [
                owner_id,
                data["id"],
                data["name"],
                data.get("domain"),
                int(data.get("active", True)),
                json.dumps(data.get("settings") or {}),
                data.get("secrets"),
                now,
                now,
            ],
        )
    except INTEGRITY_ERRORS:
        raise ConflictError(f"client {data['id']!r} already exists") from None
    return get(db, owner_id, data["id"])


def update(db: sqlite_utils.Database, owner_id: str, client_id: str, changes: dict[str, Any]) -> dict[str, Any]:
    get(db, owner_id, client_id)
    sets: dict[str, Any] = {k: changes[k] for k in ("name", "domain", "active", "settings", "secrets") if k in changes}
    if "settings" in sets:
        sets["settings"] = json.dumps(sets["settings"] or {})
    if "active" in sets:
        sets["active"] = int(bool(sets["active"]))
    sets["updated_at"] = now_iso()
    db.execute(
        f"UPDATE clients SET {', '.join(f'{c} = ?' for c in sets)} WHERE owner_id = ? AND id = ?",
        [*sets.values(), owner_id, client_id],
    )
    return get(db, owner_id, client_id)


def with_livekit_key(db: sqlite_utils.Database, api_key: str) -> list[dict[str, Any]]:
    """Clients whose LiveKit server signs with this API key (to verify that server's webhooks)."""
    return [
        record(r)
        for r in db.query(f"SELECT * FROM clients WHERE {json_text(db, 'settings', 'livekit.api_key')} = ?", [api_key])
    ]
