"""Usage and cost wire models (000: UsageEvent, CostSummary, TimelinePoint, AgentCost, SessionCostBreakdown)."""

from __future__ import annotations

from decimal import Decimal
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from .common import Query
from .sessions import DATE_PATTERN, DateRange

EventType = Literal["stt_minutes", "llm_tokens", "tts_characters", "sip_minutes", "storage_minutes"]


def _number(v: object) -> object:
    # JSON numbers only: a string or a boolean is a wrong type, not a number to coerce.
    if isinstance(v, (str, bool)):
        raise ValueError("must be a JSON number")
    return v


class UsageEventIn(BaseModel):
    """Body of POST /api/usage/events. Money and quantities are read as exact decimals from the JSON text."""

    model_config = ConfigDict(extra="ignore")

    id: str | None = Field(
        default=None,
        min_length=1,
        max_length=200,
        description="The event's id in your system; used as its idempotency key.",
    )
    session_id: str | None = Field(default=None, max_length=100)
    user_id: str | None = Field(default=None, max_length=200, description="If given, must be the caller.")
    agent_id: str | None = Field(default=None, max_length=100)
    provider: str = Field(min_length=1, max_length=100)
    model: str | None = Field(default=None, max_length=200)
    event_type: EventType
    token_kind: Literal["input", "output"] | None = None
    quantity: Decimal = Field(ge=0, le=Decimal("1e12"), allow_inf_nan=False)
    unit_cost: Decimal | None = Field(default=None, ge=0, le=Decimal("1e6"), allow_inf_nan=False)
    total_cost: Decimal | None = Field(default=None, ge=0, le=Decimal("1e9"), allow_inf_nan=False)
    occurred_at: str | None = Field(default=None, pattern=DATE_PATTERN)

    _numbers = field_validator("quantity", "unit_cost", "total_cost", mode="before")(_number)

    @field_validator("id", "session_id", "user_id", "agent_id", "provider", "model", mode="before")
    @classmethod
    def _strings(cls, v: object) -> object:
        if v is not None and not isinstance(v, str):
            raise ValueError("must be a string")
        return v


class UsageEvent(BaseModel):
    id: str
    session_id: str | None
    user_id: str = Field(description="The owning tenant's id (kept under its first name; see tenant_id).")
    tenant_id: str
    agent_id: str | None
    provider: str
    model: str | None
    event_type: EventType
    token_kind: str | None
    quantity: float
    unit: str
    unit_cost: float | None = Field(description="USD per unit of quantity; null when unpriced.")
    total_cost: float | None = Field(description="USD; null when unpriced.")
    total_cost_nanos: int | None
    priced: bool
    price_version: str | None
    idempotency_key: str
    source: str
    occurred_at: str
    created_at: str


class CostSummary(BaseModel):
    total_cost: float
    this_month_cost: float
    by_provider: dict[str, float]
    currency: str
    event_count: int
    unpriced_event_count: int = Field(description="Usage recorded without a price (never counted as 0 cost).")
    total_cost_nanos: int


class TimelineQuery(DateRange):
    period: Literal["daily", "weekly", "monthly"] = "daily"


class TimelinePoint(BaseModel):
    date: str = Field(description="Day (daily), Monday of the ISO week (weekly) or first of the month (monthly).")
    total_cost: float
    by_provider: dict[str, float]
    total_cost_nanos: int


class AgentCost(BaseModel):
    agent_id: str | None
    agent_name: str | None
    total_cost: float
    session_count: int
    event_count: int
    total_cost_nanos: int


EVENTS_LIMIT = 100
MAX_EVENTS_LIMIT = 1000


class BreakdownQuery(Query):
    """One page of a session's events; the totals always cover every event of the session."""

    events_limit: int = Field(
        default=EVENTS_LIMIT, ge=0, le=MAX_EVENTS_LIMIT, description="Events in this page (0: totals only)."
    )
    events_offset: int = Field(default=0, ge=0, le=1_000_000_000, description="Events skipped before this page.")


class SessionCostBreakdown(BaseModel):
    session_id: str
    total_cost: float
    events: list[UsageEvent] = Field(description="One page of the session's events, oldest first.")
    cost_by_type: dict[str, float]
    unpriced_event_count: int
    total_cost_nanos: int
    events_total: int = Field(description="Events of the whole session (every total counts them all).")
    events_limit: int
    events_offset: int
