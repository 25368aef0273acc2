"""004's dashboard routes: metrics, campaigns and the sheet view, from the product's own store."""

from __future__ import annotations

from ..errors import BadRequest
from ..keys import PRICEBOOK, SETTINGS, STORE
from ..routing import RequestContext, Route
from ..schemas.metrics import (
    AskAnswer,
    AskRequest,
    ByCampaign,
    Campaigns,
    CostBreakdown,
    CostBreakdownQuery,
    MetricsSummary,
    PeriodQuery,
    Sheets,
    SheetsQuery,
    StepBreakdown,
    Timeseries,
    TimeseriesQuery,
)
from ..services import ask as ask_service
from ..services import metrics

_ERRORS = (400,)


def _terms(ctx: RequestContext) -> tuple[str, ...]:
    return ctx.request.app[SETTINGS].success_outcomes


async def metrics_summary(ctx: RequestContext) -> dict:
    q: PeriodQuery = ctx.query
    return await metrics.summary(
        ctx.request.app[STORE], ctx.tenant_id, metrics.period(q.start, q.end), q.campaign, _terms(ctx)
    )


async def metrics_timeseries(ctx: RequestContext) -> dict:
    q: TimeseriesQuery = ctx.query
    if q.metric is None:
        raise BadRequest(f"Missing required parameter: metric (one of {', '.join(metrics.METRICS)})")
    return await metrics.timeseries(
        ctx.request.app[STORE], ctx.tenant_id, q.metric, metrics.period(q.start, q.end), q.campaign, _terms(ctx)
    )


async def metrics_by_campaign(ctx: RequestContext) -> dict:
    q: PeriodQuery = ctx.query
    return await metrics.by_campaign(ctx.request.app[STORE], ctx.tenant_id, metrics.period(q.start, q.end), _terms(ctx))


async def metrics_cost_breakdown(ctx: RequestContext) -> dict:
    q: CostBreakdownQuery = ctx.query
    return await metrics.cost_breakdown(
        ctx.request.app[STORE], ctx.tenant_id, metrics.period(q.start, q.end), q.campaign, q.workspace_id
    )


async def metrics_step_breakdown(ctx: RequestContext) -> dict:
    q: PeriodQuery = ctx.query
    return await metrics.step_breakdown(
        ctx.request.app[STORE], ctx.tenant_id, metrics.period(q.start, q.end), q.campaign, q.source or "sheets"
    )


async def list_campaigns(ctx: RequestContext) -> dict:
    return await metrics.campaigns(ctx.request.app[STORE], ctx.tenant_id)


async def sheets(ctx: RequestContext) -> dict:
    q: SheetsQuery = ctx.query
    if q.format == "raw":
        return await metrics.sheet_rows(ctx.request.app[STORE], ctx.tenant_id, q.campaign, q.limit, q.offset)
    return await metrics.sheet_stats(ctx.request.app[STORE], ctx.tenant_id, q.campaign)


async def ask(ctx: RequestContext) -> dict:
    body: AskRequest = ctx.body
    app = ctx.request.app
    return await ask_service.ask(app[STORE], app[PRICEBOOK], app[SETTINGS], ctx.tenant_id, body.question)


ROUTES = [
    Route(
        "GET",
        "/api/metrics/summary",
        metrics_summary,
        "Outreach and cost figures with period-over-period",
        "metrics",
        response=MetricsSummary,
        query=PeriodQuery,
        errors=_ERRORS,
        seed_errors=True,
    ),
    Route(
        "GET",
        "/api/metrics/timeseries",
        metrics_timeseries,
        "One metric per day",
        "metrics",
        response=Timeseries,
        query=TimeseriesQuery,
        errors=_ERRORS,
        seed_errors=True,
    ),
    Route(
        "GET",
        "/api/metrics/by-campaign",
        metrics_by_campaign,
        "Per campaign: outreach, cost, cost per reply and per successful call",
        "metrics",
        response=ByCampaign,
        query=PeriodQuery,
        errors=_ERRORS,
        seed_errors=True,
    ),
    Route(
        "GET",
        "/api/metrics/cost-breakdown",
        metrics_cost_breakdown,
        "The ledger by provider, model and day",
        "metrics",
        response=CostBreakdown,
        query=CostBreakdownQuery,
        errors=(400, 404),
        seed_errors=True,
    ),
    Route(
        "GET",
        "/api/metrics/step-breakdown",
        metrics_step_breakdown,
        "Sends per sequence step and per day",
        "metrics",
        response=StepBreakdown,
        query=PeriodQuery,
        errors=_ERRORS,
        seed_errors=True,
    ),
    Route(
        "GET",
        "/api/campaigns",
        list_campaigns,
        "Every campaign the tenant's data names",
        "metrics",
        response=Campaigns,
        seed_errors=True,
    ),
    Route(
        "GET",
        "/api/sheets",
        sheets,
        "004's sheet view (stats or raw rows) from the stored events",
        "metrics",
        response=Sheets,
        query=SheetsQuery,
        seed_errors=True,
    ),
    Route(
        "POST",
        "/api/ask",
        ask,
        "Ask a question about your costs and outcomes (Gemini over the metric functions)",
        "metrics",
        response=AskAnswer,
        body=AskRequest,
        errors=(502, 503),
        seed_errors=True,
    ),
]
