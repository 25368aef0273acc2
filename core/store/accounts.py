"""Local accounts: users who log in with an email and a password against the embedded issuer.

Records are plain dicts; ``password_hash`` is an argon2 PHC string (hashing lives in ``api/passwords.py``, never
here: this module only stores what it is given).
"""

from __future__ import annotations

import uuid
from typing import Any

import sqlite_utils

from core.store.errors import INTEGRITY_ERRORS, ConflictError, NotFoundError
from core.store.timefmt import now_iso

USER_PREFIX = "usr_"


def new_user_id() -> str:
    return USER_PREFIX + uuid.uuid4().hex


def normalize_email(email: str) -> str:
    """Emails are matched case-insensitively (the column is NOCASE); surrounding blanks are never part of one."""
    return email.strip()


def _record(row: dict[str, Any]) -> dict[str, Any]:
    return {**row, "is_admin": bool(row["is_admin"])}


def create_user(db: sqlite_utils.Database, email: str, password_hash: str, is_admin: bool = False) -> dict[str, Any]:
    email = normalize_email(email)
    now = now_iso()
    row = {
        "id": new_user_id(),
        "email": email,
        "password_hash": password_hash,
        "is_admin": int(bool(is_admin)),
        "created_at": now,
        "updated_at": now,
    }
    try:
        db.execute(
            "INSERT INTO users (id, email, password_hash, is_admin, created_at, updated_at) VALUES (?,?,?,?,?,?)",
            [row["id"], row["email"], row["password_hash"], row["is_admin"], row["created_at"], row["updated_at"]],
        )
    except INTEGRITY_ERRORS:
        raise ConflictError(f"a user with email {email} already exists") from None
    return _record(row)


def get_by_email(db: sqlite_utils.Database, email: str) -> dict[str, Any] | None:
    rows = list(db.query("SELECT * FROM users WHERE email = ?", [normalize_email(email)]))
    return _record(rows[0]) if rows else None


def get(db: sqlite_utils.Database, user_id: str) -> dict[str, Any]:
    rows = list(db.query("SELECT * FROM users WHERE id = ?", [user_id]))
    if not rows:
        raise NotFoundError(f"user {user_id} not found")
    return _record(rows[0])


def is_admin(db: sqlite_utils.Database, user_id: str) -> bool:
    row = db.execute("SELECT is_admin FROM users WHERE id = ?", [user_id]).fetchone()
    return bool(row and row[0])


def set_password_hash(db: sqlite_utils.Database, user_id: str, password_hash: str) -> None:
    """Replace the stored hash (a rehash under newer argon2 parameters after a successful login)."""
    cur = db.execute(
        "UPDATE users SET password_hash = ?, updated_at = ? WHERE id = ?", [password_hash, now_iso(), user_id]
    )
    if cur.rowcount == 0:
        raise NotFoundError(f"user {user_id} not found")
