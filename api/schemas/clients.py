"""Clients (Autonomite, 002): ``{id, name, domain, active, settings: {livekit: {server_url, api_key, api_secret}}}``.
Secrets are write-only: a response shows them masked (``****`` and the last four characters), and sending the
masked value back keeps the stored one."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field, model_validator

from .common import RequestBody

_ID = Field(default=None, min_length=1, max_length=64, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
_DOMAIN = Field(default=None, min_length=1, max_length=253, pattern=r"^[A-Za-z0-9.-]+(:[0-9]{1,5})?$")
_TEXT = Field(default=None, min_length=1, max_length=500)


class ClientLiveKit(RequestBody):
    server_url: str | None = Field(default=None, max_length=500, pattern=r"^(wss?|https?)://[^\s]+$")
    api_key: str | None = _TEXT
    api_secret: str | None = _TEXT


class ClientSupabase(RequestBody):
    """Accepted and stored (secrets sealed), not used by voxarena."""

    url: str | None = Field(default=None, max_length=500)
    anon_key: str | None = Field(default=None, min_length=1, max_length=4_000)
    service_role_key: str | None = Field(default=None, min_length=1, max_length=4_000)


class ClientSettings(RequestBody):
    livekit: ClientLiveKit | None = None
    supabase: ClientSupabase | None = None


class ClientCreate(RequestBody):
    id: str | None = _ID
    name: str = Field(min_length=1, max_length=200)
    domain: str | None = _DOMAIN
    active: bool = True
    settings: ClientSettings | None = None


class ClientUpdate(RequestBody):
    name: str | None = Field(default=None, min_length=1, max_length=200)
    domain: str | None = _DOMAIN
    active: bool | None = None
    settings: ClientSettings | None = None

    @model_validator(mode="after")
    def _not_null(self) -> ClientUpdate:
        for name in ("name", "active"):
            if name in self.model_fields_set and getattr(self, name) is None:
                raise ValueError(f"{name} cannot be null")
        return self


class Client(BaseModel):
    id: str
    name: str
    domain: str | None
    active: bool
    settings: dict[str, Any] = Field(
        description="livekit {server_url, api_key, api_secret (masked)}, supabase "
        "{url, anon_key (masked), service_role_key (masked)}"
    )
    created_at: str
    updated_at: str
