"""004's ingest shapes: cost events (POST /api/cost-events, /api/llm-usage) and outreach events (POST /api/events),
each item validated on its own; the answer counts what was stored, replayed and refused."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Annotated, Any, Literal

from pydantic import AliasChoices, BaseModel, BeforeValidator, ConfigDict, Field


def _text(value: Any) -> Any:
    """Workflow tools send ids as numbers as often as strings (n8n's ``$execution.id``): both are text here."""
    if isinstance(value, bool):
        return value
    if isinstance(value, int):
        return str(value)
    return value


Id = Annotated[str | None, BeforeValidator(_text), Field(default=None, min_length=1, max_length=200)]
OutreachType = Literal["sent", "delivered", "replied", "opt_out", "bounced"]
OUTREACH_TYPES: tuple[str, ...] = OutreachType.__args__  # type: ignore[attr-defined]


class _Item(BaseModel):
    # Lenient like the workflow tools that send these ("291" is 291 tokens); unknown fields are ignored.
    model_config = ConfigDict(extra="ignore")


class CostEventIn(_Item):
    provider: str = Field(min_length=1, max_length=100)
    model: str | None = Field(default=None, min_length=1, max_length=200)
    tokens_in: int = Field(default=0, ge=0, le=10**12)
    tokens_out: int = Field(default=0, ge=0, le=10**12)
    cost_usd: Decimal | None = Field(
        default=None,
        ge=0,
        le=10**6,
        allow_inf_nan=False,
        description="What the provider charged, in USD (kept exactly, to the nano).",
    )
    campaign_name: str | None = Field(
        default=None, min_length=1, max_length=200, validation_alias=AliasChoices("campaign_name", "campaign")
    )
    contact_email: str | None = Field(default=None, max_length=320)
    purpose: str | None = Field(default=None, max_length=200)
    workflow_id: Id
    run_id: Id
    metadata: dict[str, Any] | None = None
    occurred_at: datetime | None = Field(
        default=None,
        validation_alias=AliasChoices("occurred_at", "created_at", "timestamp"),
        description="When the cost was incurred (default: when it arrives).",
    )


class OutreachEventIn(_Item):
    contact_email: str = Field(min_length=3, max_length=320)
    campaign: str | None = Field(
        default=None, min_length=1, max_length=200, validation_alias=AliasChoices("campaign", "campaign_name")
    )
    step: int | None = Field(default=None, ge=1, le=1000)
    event_type: OutreachType
    provider: str | None = Field(default=None, max_length=100)
    provider_message_id: str | None = Field(default=None, min_length=1, max_length=500)
    event_ts: datetime | None = Field(default=None, description="When it happened (default: when it arrives).")
    metadata: dict[str, Any] | None = None


class CostResult(BaseModel):
    id: str
    provider: str
    model: str | None
    cost_usd: float | None = Field(description="What the ledger counts: the reported cost, else the priced one.")
    index: int = Field(description="The item's position in the request.")
    duplicate: bool = Field(description="A replay: the item was already stored (with this id); nothing was added.")
    reported_cost_usd: float | None
    priced_cost_usd: float | None = Field(
        description="The price book's figure for its tokens, when it knows the provider and model."
    )
    cost_nanos: int | None


class OutreachResult(BaseModel):
    id: str
    event_type: OutreachType
    contact_email: str
    campaign: str | None
    index: int
    duplicate: bool


class ItemError(BaseModel):
    index: int
    error: str


class _Ingested(BaseModel):
    success: bool = Field(description="True when no item was refused.")
    inserted: int
    duplicates: int = Field(description="Items already stored (a replay): neither inserted nor errors.")
    errors: int
    error_details: list[ItemError] = Field(description="Each refused item: its index and why.")


class CostIngested(_Ingested):
    results: list[CostResult]


class OutreachIngested(_Ingested):
    results: list[OutreachResult]
