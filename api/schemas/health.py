from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field


class ComponentHealth(BaseModel):
    status: Literal["ok", "degraded", "error", "connecting", "unreachable", "not_configured", "disabled"]
    detail: str | None = None


class LoopLag(BaseModel):
    samples: int
    lag_p50_ms: float
    lag_p99_ms: float
    lag_max_ms: float


class Health(BaseModel):
    status: Literal["healthy", "degraded"]
    version: str
    uptime: float
    timestamp: str
    database: ComponentHealth
    livekit: ComponentHealth
    event_loop: LoopLag


class Healthz(BaseModel):
    """The short liveness answer of the Phony API: ``status`` is "ok" whenever the process answers."""

    status: Literal["ok"]
    uptime: int = Field(description="Whole seconds since the API started.")
    activeCalls: int = Field(description="Sessions with status 'active' (calls in progress).")
