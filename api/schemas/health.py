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
    gc_full_collections: int = Field(
        description="Full (generation 2) garbage collections in this process since the API started."
    )
    gc_full_pause_max_ms: float = Field(
        description="The longest of the last 100 full collections: the process's threads and its event loop "
        "wait for each."
    )
    gc_frozen_objects: int = Field(
        description="Objects made at start and frozen out of full collections (the imports, the app)."
    )


class NodeHealth(BaseModel):
    id: str = Field(description="This node's name in the cluster (VOXARENA_NODE_ID or made at start).")
    draining: bool = Field(description="True once SIGTERM was received: no new calls, the running ones finish.")
    backend: Literal["sqlite", "postgresql"] = Field(description="The store this node uses.")


class Health(BaseModel):
    status: Literal["healthy", "degraded"]
    version: str
    uptime: float
    timestamp: str
    database: ComponentHealth
    livekit: ComponentHealth
    event_loop: LoopLag
    node: NodeHealth | None = None


class Healthz(BaseModel):
    """The short liveness answer of the Phony API: ``status`` is "ok" whenever the process answers."""

    status: Literal["ok"]
    uptime: int = Field(description="Whole seconds since the API started.")
    activeCalls: int = Field(description="Sessions with status 'active' (calls in progress).")
