"""API keys: the key itself appears once, in the creation response."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field

from .common import RequestBody


class ApiKeyCreate(RequestBody):
    name: str = Field(min_length=1, max_length=200)


class ApiKey(BaseModel):
    id: str
    name: str
    prefix: str = Field(description="The key's first characters, to recognise it.")
    created_at: str
    last_used_at: str | None
    created_by: str


class NewApiKey(ApiKey):
    key: str = Field(description="The key itself, shown only in this response.")


class ApiKeyList(BaseModel):
    keys: list[ApiKey]
    total: int


def key_wire(row: dict[str, Any]) -> dict[str, Any]:
    return {k: row[k] for k in ("id", "name", "prefix", "created_at", "last_used_at", "created_by")}
