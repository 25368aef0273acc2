from __future__ import annotations

from typing import Literal

from pydantic import BaseModel


class ComponentHealth(BaseModel):
    status: Literal["ok", "error", "connecting", "unreachable", "not_configured", "disabled"]
    detail: str | None = None


class Health(BaseModel):
    status: Literal["healthy", "degraded"]
    version: str
    uptime: float
    timestamp: str
    database: ComponentHealth
    livekit: ComponentHealth
