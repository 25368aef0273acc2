"""Tenants and their members. A tenant owns every row (its id is each row's ``owner_id``); every user has a
personal tenant, whose id is derived from the user's id so it needs no lookup table and no race to create."""

from __future__ import annotations

import functools
import hashlib
import re
import unicodedata
import uuid
from typing import Any

import sqlite_utils

from core.store.errors import INTEGRITY_ERRORS, ConflictError, NotFoundError
from core.store.timefmt import now_iso

ROLES = ("owner", "member")
STATUSES = ("trial", "active", "suspended")
UPDATABLE = (
    "name",
    "billing_email",
    "max_agents",
    "max_concurrent_calls",
    "status",
    "rate_limit_rps",
    "recording_default",
)


@functools.lru_cache(maxsize=65536)  # asked on every request of a user
def personal_tenant_id(user_id: str) -> str:
    return "ten_" + hashlib.sha256(b"personal:" + user_id.encode()).hexdigest()[:24]


def slugify(text: str, *, fallback: str = "agent") -> str:
    ascii_text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode()
    slug = re.sub(r"[^a-z0-9]+", "-", ascii_text.lower()).strip("-")[:64].strip("-")
    return slug or fallback


def unstored_personal(user_id: str) -> dict[str, Any]:
    """What a personal tenant is before its row exists: active, no limits."""
    return {
        "id": personal_tenant_id(user_id),
        "name": user_id,
        "subdomain": None,
        "status": "active",
        "personal_of": user_id,
        "max_agents": None,
        "max_concurrent_calls": None,
        "rate_limit_rps": None,
        "billing_email": None,
        "recording_default": None,
        "created_at": None,
        "updated_at": None,
    }


def ensure_personal(db: sqlite_utils.Database, user_id: str) -> dict[str, Any]:
    """The user's personal tenant, created (with the user as its owner) on first use."""
    tenant_id = personal_tenant_id(user_id)
    now = now_iso()
    db.execute(
        "INSERT INTO tenants (id, name, status, personal_of, created_at, updated_at) "
        "VALUES (?, ?, 'active', ?, ?, ?) ON CONFLICT DO NOTHING",
        [tenant_id, user_id, user_id, now, now],
    )
    db.execute(
        "INSERT INTO tenant_members (tenant_id, user_id, role, created_at) VALUES (?, ?, 'owner', ?) "
        "ON CONFLICT DO NOTHING",
        [tenant_id, user_id, now],
    )
    return get(db, tenant_id)


def find(db: sqlite_utils.Database, tenant_id: str) -> dict[str, Any] | None:
    rows = list(db.query("SELECT * FROM tenants WHERE id = ?", [tenant_id]))
    return rows[0] if rows else None


def get(db: sqlite_utils.Database, tenant_id: str) -> dict[str, Any]:
    row = find(db, tenant_id)
    if row is None:
        raise NotFoundError(f"tenant {tenant_id} not found")
    return row


def list_(db: sqlite_utils.Database) -> list[dict[str, Any]]:
    return list(db.query("SELECT * FROM tenants ORDER BY created_at, id"))


def create(db: sqlite_utils.Database, data: dict[str, Any], *, owner_user_id: str | None = None) -> dict[str, Any]:
    now = now_iso()
    tenant_id = "ten_" + uuid.uuid4().hex[:24]
    try:
        db.execute(
            "INSERT INTO tenants (id, name, subdomain, status, max_agents, max_concurrent_calls, rate_limit_rps, "
            "billing_email, recording_default, created_at, updated_at) VALUES (?, ?, ?, 'trial', ?, ?, ?, ?, ?, ?, ?)",
            [
                tenant_id,
                data["name"],
                data.get("subdomain"),
                data.get("max_agents"),
                data.get("max_concurrent_calls"),
                data.get("rate_limit_rps"),
                data.get("billing_email"),
                _flag(data.get("recording_default")),
                now,
                now,
            ],
        )
    except INTEGRITY_ERRORS:
        raise ConflictError(f"subdomain {data.get('subdomain')!r} is taken") from None
    if owner_user_id is not None:
        add_member(db, tenant_id, owner_user_id, "owner")
    return get(db, tenant_id)


def _flag(value: bool | None) -> int | None:
    return None if value is None else int(value)


def recording_default(db: sqlite_utils.Database, tenant_id: str) -> bool | None:
    """Whether the tenant's calls are recorded when their agent does not say; None: the product's default (also
    for a tenant with no row yet)."""
    row = db.execute("SELECT recording_default FROM tenants WHERE id = ?", [tenant_id]).fetchone()
    return None if row is None or row[0] is None else bool(row[0])


def update(db: sqlite_utils.Database, tenant_id: str, changes: dict[str, Any]) -> dict[str, Any]:
    get(db, tenant_id)
    sets = {k: _flag(v) if k == "recording_default" else v for k, v in changes.items() if k in UPDATABLE}
    sets["updated_at"] = now_iso()
    db.execute(f"UPDATE tenants SET {', '.join(f'{c} = ?' for c in sets)} WHERE id = ?", [*sets.values(), tenant_id])
    return get(db, tenant_id)


# ---- members ----


def role_of(db: sqlite_utils.Database, tenant_id: str, user_id: str) -> str | None:
    row = db.execute(
        "SELECT role FROM tenant_members WHERE tenant_id = ? AND user_id = ?", [tenant_id, user_id]
    ).fetchone()
    return row[0] if row else None


def add_member(db: sqlite_utils.Database, tenant_id: str, user_id: str, role: str) -> dict[str, Any]:
    """Adds the user, or changes the role of one already there."""
    get(db, tenant_id)
    db.execute(
        "INSERT INTO tenant_members (tenant_id, user_id, role, created_at) VALUES (?, ?, ?, ?) "
        "ON CONFLICT (tenant_id, user_id) DO UPDATE SET role = excluded.role",
        [tenant_id, user_id, role, now_iso()],
    )
    return member(db, tenant_id, user_id)


def member(db: sqlite_utils.Database, tenant_id: str, user_id: str) -> dict[str, Any]:
    rows = list(db.query("SELECT * FROM tenant_members WHERE tenant_id = ? AND user_id = ?", [tenant_id, user_id]))
    if not rows:
        raise NotFoundError(f"member {user_id} not found")
    return rows[0]


def members(db: sqlite_utils.Database, tenant_id: str) -> list[dict[str, Any]]:
    get(db, tenant_id)
    return list(db.query("SELECT * FROM tenant_members WHERE tenant_id = ? ORDER BY created_at, user_id", [tenant_id]))


def remove_member(db: sqlite_utils.Database, tenant_id: str, user_id: str) -> None:
    row = member(db, tenant_id, user_id)
    if row["role"] == "owner":
        owners = db.execute(
            "SELECT COUNT(*) FROM tenant_members WHERE tenant_id = ? AND role = 'owner'", [tenant_id]
        ).fetchone()[0]
        if owners <= 1:
            raise ConflictError(f"{user_id} is the tenant's last owner")
    db.execute("DELETE FROM tenant_members WHERE tenant_id = ? AND user_id = ?", [tenant_id, user_id])
