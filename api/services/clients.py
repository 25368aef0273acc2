"""Clients' settings: split into plain settings and sealed secrets on the way in, masked on the way out, and
opened only to reach the client's LiveKit server."""

from __future__ import annotations

import json
import uuid
from typing import Any

import sqlite_utils

from core.netpolicy import AddressRefused, NetPolicy
from core.secrets import SecretBox, is_masked, mask
from core.store import clients as repo

from ..errors import BadRequest, ValidationFailed
from ..schemas.clients import ClientCreate, ClientSettings, ClientUpdate

SECRET_FIELDS = {"livekit": ("api_secret",), "supabase": ("anon_key", "service_role_key")}


def _merge(plain: dict[str, Any], secret: dict[str, Any], incoming: ClientSettings) -> tuple[dict, dict]:
    plain = {k: dict(v) for k, v in plain.items()}
    secret = {k: dict(v) for k, v in secret.items()}
    for section, values in incoming.model_dump(exclude_none=True).items():
        for field, value in values.items():
            if field in SECRET_FIELDS.get(section, ()):
                if not is_masked(value):  # the masked value sent back means "keep it"
                    secret.setdefault(section, {})[field] = value
            else:
                plain.setdefault(section, {})[field] = value
    livekit = {**plain.get("livekit", {}), **secret.get("livekit", {})}
    if livekit and not all(livekit.get(k) for k in ("server_url", "api_key", "api_secret")):
        raise ValidationFailed("body settings.livekit: give server_url, api_key and api_secret together")
    return plain, secret


async def check_urls(policy: NetPolicy, settings: ClientSettings | None) -> None:
    """The client's LiveKit server must be one the outbound address policy lets the product reach: checked (and
    resolved) when it is set, as it is again at each use."""
    server_url = settings.livekit.server_url if settings is not None and settings.livekit is not None else None
    if server_url:
        try:
            await policy.check_url(server_url, schemes=("http", "https", "ws", "wss"))
        except AddressRefused as e:
            raise BadRequest(f"body settings.livekit.server_url: {e}") from None


def _secrets(box: SecretBox, row: dict[str, Any] | None) -> dict[str, Any]:
    return json.loads(box.open(row["secrets"])) if row and row.get("secrets") else {}


def _seal(box: SecretBox, secret: dict[str, Any]) -> str | None:
    return box.seal(json.dumps(secret)) if secret else None


def create(db: sqlite_utils.Database, box: SecretBox, owner_id: str, body: ClientCreate) -> dict[str, Any]:
    plain, secret = _merge({}, {}, body.settings or ClientSettings())
    data = {
        "id": body.id or f"cl_{uuid.uuid4().hex[:16]}",
        "name": body.name,
        "domain": body.domain,
        "active": body.active,
        "settings": plain,
        "secrets": _seal(box, secret),
    }
    return wire(box, repo.create(db, owner_id, data))


def update(
    db: sqlite_utils.Database, box: SecretBox, owner_id: str, client_id: str, body: ClientUpdate
) -> dict[str, Any]:
    row = repo.get(db, owner_id, client_id)
    changes: dict[str, Any] = {k: getattr(body, k) for k in body.model_fields_set if k != "settings"}
    if body.settings is not None:
        plain, secret = _merge(row["settings"], _secrets(box, row), body.settings)
        changes.update(settings=plain, secrets=_seal(box, secret))
    return wire(box, repo.update(db, owner_id, client_id, changes))


def wire(box: SecretBox, row: dict[str, Any]) -> dict[str, Any]:
    settings = {k: dict(v) for k, v in row["settings"].items()}
    for section, values in _secrets(box, row).items():
        for field, value in values.items():
            settings.setdefault(section, {})[field] = mask(value)
    return {
        "id": row["id"],
        "name": row["name"],
        "domain": row["domain"],
        "active": row["active"],
        "settings": settings,
        "created_at": row["created_at"],
        "updated_at": row["updated_at"],
    }


def livekit_of(box: SecretBox, row: dict[str, Any]) -> dict[str, str] | None:
    """The client's own LiveKit server (server_url, api_key, api_secret), or None to use the product's."""
    livekit = {**row["settings"].get("livekit", {}), **_secrets(box, row).get("livekit", {})}
    return livekit if livekit.get("server_url") else None
