"""API keys: shown once at creation, stored only as a SHA-256 hash (a key is 256 random bits, so a fast hash is
enough: there is nothing to brute-force), resolved by that hash, revoked at once."""

from __future__ import annotations

import hashlib
import re
import secrets
import uuid
from typing import Any

import sqlite_utils

from core.store.errors import NotFoundError
from core.store.timefmt import now_iso

KEY_PREFIX = "vxa_"
KEY_SHAPE = re.compile(r"^vxa_[A-Za-z0-9_-]{43}$")


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def well_formed(key: str) -> bool:
    return bool(KEY_SHAPE.match(key))


def create(db: sqlite_utils.Database, owner_id: str, name: str, created_by: str) -> tuple[dict[str, Any], str]:
    """The stored record and the key itself, which is never stored and never shown again."""
    key = KEY_PREFIX + secrets.token_urlsafe(32)
    record = {
        "id": "key_" + uuid.uuid4().hex[:24],
        "owner_id": owner_id,
        "name": name,
        "prefix": key[:12],
        "key_hash": hash_key(key),
        "created_by": created_by,
        "created_at": now_iso(),
        "last_used_at": None,
        "revoked_at": None,
    }
    db.execute(
        f"INSERT INTO api_keys ({', '.join(record)}) VALUES ({', '.join('?' * len(record))})", list(record.values())
    )
    return record, key


def list_(db: sqlite_utils.Database, owner_id: str) -> list[dict[str, Any]]:
    return list(
        db.query("SELECT * FROM api_keys WHERE owner_id = ? AND revoked_at IS NULL ORDER BY created_at, id", [owner_id])
    )


def revoke(db: sqlite_utils.Database, owner_id: str, key_id: str) -> None:
    cur = db.execute(
        "UPDATE api_keys SET revoked_at = ? WHERE id = ? AND owner_id = ? AND revoked_at IS NULL",
        [now_iso(), key_id, owner_id],
    )
    if cur.rowcount == 0:
        raise NotFoundError(f"API key {key_id} not found")


def resolve(db: sqlite_utils.Database, key: str) -> dict[str, Any] | None:
    """The live key with this value, or None (unknown or revoked)."""
    rows = list(db.query("SELECT * FROM api_keys WHERE key_hash = ? AND revoked_at IS NULL", [hash_key(key)]))
    return rows[0] if rows else None


def touch(db: sqlite_utils.Database, key_id: str, at: str) -> None:
    db.execute("UPDATE api_keys SET last_used_at = ? WHERE id = ?", [at, key_id])


def exists(db: sqlite_utils.Database, owner_id: str, key_id: str) -> bool:
    return (
        db.execute(
            "SELECT 1 FROM api_keys WHERE id = ? AND owner_id = ? AND revoked_at IS NULL", [key_id, owner_id]
        ).fetchone()
        is not None
    )
