"""Tenants and members (Phony, 003): snake_case as 003 writes them."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field, model_validator

from .common import RequestBody

TenantStatus = Literal["trial", "active", "suspended"]
_SUBDOMAIN = Field(default=None, pattern=r"^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$")
_LIMIT = Field(default=None, ge=0, le=1_000_000)
_RPS = Field(default=None, gt=0, le=1_000_000)
_EMAIL = Field(default=None, max_length=320, pattern=r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
_RECORDING = Field(
    default=None,
    description="Whether the tenant's calls are recorded when their agent's recordingEnabled is null; null: the "
    "product's default (VOXARENA_RECORDING_DEFAULT). An agent's own true or false wins.",
)


class TenantCreate(RequestBody):
    name: str = Field(min_length=1, max_length=200)
    subdomain: str | None = _SUBDOMAIN
    max_agents: int | None = _LIMIT
    max_concurrent_calls: int | None = _LIMIT
    billing_email: str | None = _EMAIL
    rate_limit_rps: float | None = _RPS
    recording_default: bool | None = _RECORDING
    owner_user_id: str | None = Field(
        default=None, min_length=1, max_length=200, description="A user to add as the tenant's first owner."
    )


# Only platform admins may change these: a tenant's owner cannot lift its own limits or its suspension.
ADMIN_FIELDS = ("max_agents", "max_concurrent_calls", "status", "rate_limit_rps")


class TenantUpdate(RequestBody):
    name: str | None = Field(default=None, min_length=1, max_length=200)
    billing_email: str | None = _EMAIL
    max_agents: int | None = _LIMIT
    max_concurrent_calls: int | None = _LIMIT
    status: TenantStatus | None = None
    rate_limit_rps: float | None = _RPS
    recording_default: bool | None = _RECORDING

    @model_validator(mode="after")
    def _not_null(self) -> TenantUpdate:
        for name in ("name", "status"):
            if name in self.model_fields_set and getattr(self, name) is None:
                raise ValueError(f"{name} cannot be null")
        return self

    def changes(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in self.model_fields_set}


class TenantLimits(BaseModel):
    max_agents: int | None = Field(description="null: no limit")
    max_concurrent_calls: int | None = Field(description="null: no limit")


class Tenant(BaseModel):
    id: str
    name: str
    subdomain: str | None
    status: TenantStatus
    created_at: str
    limits: TenantLimits
    billing_email: str | None
    rate_limit_rps: float | None
    recording_default: bool | None = _RECORDING
    personal: bool = Field(description="The personal tenant every user has.")
    updated_at: str


def tenant_wire(row: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": row["id"],
        "name": row["name"],
        "subdomain": row["subdomain"],
        "status": row["status"],
        "created_at": row["created_at"],
        "limits": {"max_agents": row["max_agents"], "max_concurrent_calls": row["max_concurrent_calls"]},
        "billing_email": row["billing_email"],
        "rate_limit_rps": row["rate_limit_rps"],
        "recording_default": None if row.get("recording_default") is None else bool(row["recording_default"]),
        "personal": row["personal_of"] is not None,
        "updated_at": row["updated_at"],
    }


class MemberCreate(RequestBody):
    user_id: str = Field(min_length=1, max_length=200)
    role: Literal["owner", "member"] = "member"


class Member(BaseModel):
    tenant_id: str
    user_id: str
    role: Literal["owner", "member"]
    created_at: str


class MemberList(BaseModel):
    members: list[Member]
    total: int
