"""A tenant's Twilio auth token (sealed by the caller: this module stores and returns the sealed text only)."""

from __future__ import annotations

import sqlite_utils

from .timefmt import now_iso


def set_auth_token(db: sqlite_utils.Database, owner_id: str, sealed: str) -> str:
    now = now_iso()
    db.execute("INSERT INTO twilio_settings (owner_id, auth_token, updated_at) VALUES (?,?,?) "
               "ON CONFLICT (owner_id) DO UPDATE SET auth_token = excluded.auth_token, updated_at = excluded.updated_at",
               [owner_id, sealed, now])
    return now


def get(db: sqlite_utils.Database, owner_id: str) -> dict | None:
    rows = list(db.query("SELECT * FROM twilio_settings WHERE owner_id = ?", [owner_id]))
    return rows[0] if rows else None


def sealed_tokens(db: sqlite_utils.Database, owner_ids: list[str]) -> dict[str, str]:
    if not owner_ids:
        return {}
    marks = ",".join("?" * len(owner_ids))
    return dict(db.execute(f"SELECT owner_id, auth_token FROM twilio_settings WHERE owner_id IN ({marks})",
                           owner_ids).fetchall())
