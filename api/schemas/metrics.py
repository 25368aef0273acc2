"""004's dashboard shapes (metrics, campaigns, sheets) and 003's call analytics, with the product's additions
(exact `*_nanos` beside each money figure, voice figures per campaign and agent)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field

from .common import Query, RequestBody

Source = Literal["sheets", "supabase"]
Metric = Literal[
    "sends", "replies", "opt_outs", "reply_rate", "opt_out_rate", "calls", "minutes", "cost", "success_rate"
]
AnalyticsPeriod = Literal["day", "week", "month", "year"]
_DAY = Field(default=None, max_length=40, description="YYYY-MM-DD (required).")
_CAMPAIGN = Field(default=None, min_length=1, max_length=200)
_SOURCE = Field(default=None, description="Accepted for 004's clients; every figure comes from the product's store.")


# ---- queries ----


class PeriodQuery(Query):
    start: str | None = _DAY
    end: str | None = _DAY
    campaign: str | None = _CAMPAIGN
    source: Source | None = _SOURCE


class TimeseriesQuery(PeriodQuery):
    metric: Metric | None = Field(default=None, description="Required.")


class CostBreakdownQuery(PeriodQuery):
    workspace_id: str | None = Field(
        default=None, max_length=200, description="The tenant the request acts in; another one is a 404."
    )


class SheetsQuery(Query):
    format: Literal["stats", "raw"] = "stats"
    campaign: str | None = _CAMPAIGN
    limit: int = Field(default=1000, ge=1, le=10_000)
    offset: int = Field(default=0, ge=0, le=1_000_000_000)


class AnalyticsQuery(Query):
    period: AnalyticsPeriod | None = Field(
        default=None, description="The last 1, 7, 30 or 365 days; all time if absent."
    )
    tenant_id: str | None = Field(
        default=None, max_length=200, description="Must be the tenant the request acts in; another one is a 404."
    )


# ---- 004 ----


class _Outreach(BaseModel):
    sends: int
    replies: int
    opt_outs: int
    bounces: int
    reply_rate_pct: float
    opt_out_rate_pct: float
    bounce_rate_pct: float
    cost_usd: float


class MetricsSummary(_Outreach):
    sends_change_pct: float | None = Field(
        description="Against the previous period of equal length; null when it had no sends."
    )
    reply_rate_change_pp: float
    opt_out_rate_change_pp: float
    prev_sends: int
    prev_reply_rate_pct: float
    start_date: str
    end_date: str
    cost_nanos: int
    cost_per_reply: float | None
    unpriced_event_count: int
    prev_start_date: str
    prev_end_date: str
    calls: int
    successful_calls: int
    success_rate: float


class Point(BaseModel):
    day: str
    value: float


class Timeseries(BaseModel):
    metric: Metric
    points: list[Point]
    start_date: str
    end_date: str


class VoiceOutcome(BaseModel):
    cost_usd: float = Field(description="All usage of these calls, failed and unanswered attempts included.")
    cost_nanos: int
    successful_calls: int
    cost_per_successful_call: float | None
    cost_per_successful_call_nanos: int | None
    unpriced_event_count: int


class CampaignVoice(VoiceOutcome):
    calls: int
    minutes: float


class CampaignRow(_Outreach):
    campaign: str
    cost_per_reply: float | None
    cost_nanos: int
    voice: CampaignVoice


class ByCampaign(BaseModel):
    campaigns: list[CampaignRow]
    start_date: str
    end_date: str


class CostFigures(BaseModel):
    cost_usd: float
    tokens_in: int
    tokens_out: int
    calls: int = Field(description="Ledger entries (an external cost event, or one usage event of a call).")
    cost_nanos: int
    unpriced_event_count: int


class ProviderCost(CostFigures):
    provider: str


class ModelCost(CostFigures):
    model: str | None
    provider: str


class CostBreakdown(BaseModel):
    total: CostFigures
    by_provider: list[ProviderCost]
    by_model: list[ModelCost]
    daily: list[Point]
    start_date: str
    end_date: str


class Step(BaseModel):
    step: int | None
    name: str
    sends: int
    lastSentAt: str


class DailySends(BaseModel):
    date: str
    count: int


class DateRange(BaseModel):
    start: str
    end: str


class StepBreakdown(BaseModel):
    steps: list[Step]
    dailySends: list[DailySends]
    totalSends: int
    dateRange: DateRange
    source: Source


class CampaignName(BaseModel):
    name: str
    id: str | None = Field(default=None, description="A dialer campaign's id (null: a name the data carries).")
    status: str | None = None
    agent_id: str | None = None
    progress: dict[str, int] | None = None
    status_reason: str | None = Field(default=None, description="Why a dialer campaign paused or stopped.")
    total_cost: float | None = Field(default=None, description="A dialer campaign's calls in the ledger, USD.")
    total_cost_nanos: int | None = Field(default=None, description="The same, in exact nano-dollars.")


class Campaigns(BaseModel):
    campaigns: list[CampaignName]


class SheetStats(BaseModel):
    totalContacts: int
    email1Sends: int
    email2Sends: int
    email3Sends: int
    totalSends: int
    uniqueContactsSent: int
    replies: int
    optOuts: int
    replyRate: float
    optOutRate: float
    campaignName: str | None


class SheetRow(BaseModel):
    id: str
    contact_email: str
    campaign: str | None
    step: int | None
    event_type: str
    provider: str | None
    provider_message_id: str | None
    event_ts: str
    created_at: str


class Sheets(BaseModel):
    success: bool
    stats: SheetStats | None = None
    rows: list[SheetRow] | None = None
    total: int | None = None
    limit: int | None = None
    offset: int | None = None


# ---- 003 ----


class TopAgent(BaseModel):
    agent_id: str
    name: str | None
    calls: int
    minutes: float


class AnalyticsSummary(VoiceOutcome):
    total_agents: int
    total_calls: int
    total_minutes: float
    average_call_duration: int = Field(description="Seconds, over the ended calls.")
    success_rate: float = Field(description="Successful ended calls / ended calls, 0..1 (see docs/costs.md).")
    busiest_hour: int | None = Field(description="UTC hour (0-23) in which most calls started.")
    top_agents: list[TopAgent]
    period: AnalyticsPeriod | None


class DayTrend(BaseModel):
    date: str
    calls: int
    minutes: float


class AgentAnalytics(VoiceOutcome):
    agent_id: str
    name: str | None
    total_calls: int
    total_minutes: float
    average_call_duration: int
    success_rate: float
    hourly_distribution: dict[str, int] = Field(description="Calls started per UTC hour (hours with calls).")
    daily_trend: list[DayTrend]
    period: AnalyticsPeriod | None


# ---- ask your data (004) ----


class AskRequest(RequestBody):
    question: str = Field(min_length=1, max_length=2_000)


class AskAnswer(BaseModel):
    answer: str
    timestamp: str
