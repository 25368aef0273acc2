"""004's dashboard routes: metrics, campaigns and the sheet view, from the product's own store."""

from __future__ import annotations

from ..errors import BadRequest
from ..keys import PRICEBOOK, SETTINGS, STORE
from ..routing import Call, Route
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


def _terms(call: Call) -> tuple[str, ...]:
    return call.request.app[SETTINGS].success_outcomes


async def metrics_summary(call: Call) -> dict:
    q: PeriodQuery = call.query
    return await metrics.summary(
        call.request.app[STORE], call.tenant_id, metrics.period(q.start, q.end), q.campaign, _terms(call)
    )


async def metrics_timeseries(call: Call) -> dict:
    q: TimeseriesQuery = call.query
    if q.metric is None:
        raise BadRequest(f"Missing required parameter: metric (one of {', '.join(metrics.METRICS)})")
    return await metrics.timeseries(
        call.request.app[STORE], call.tenant_id, q.metric, metrics.period(q.start, q.end), q.campaign, _terms(call)
    )


async def metrics_by_campaign(call: Call) -> dict:
    q: PeriodQuery = call.query
    return await metrics.by_campaign(
        call.request.app[STORE], call.tenant_id, metrics.period(q.start, q.end), _terms(call)
    )


async def metrics_cost_breakdown(call: Call) -> dict:
    q: CostBreakdownQuery = call.query
    return await metrics.cost_breakdown(
        call.request.app[STORE], call.tenant_id, metrics.period(q.start, q.end), q.campaign, q.workspace_id
    )


async def metrics_step_breakdown(call: Call) -> dict:
    q: PeriodQuery = call.query
    return await metrics.step_breakdown(
        call.request.app[STORE], call.tenant_id, metrics.period(q.start, q.end), q.campaign, q.source or "sheets"
    )


async def list_campaigns(call: Call) -> dict:
    return await metrics.campaigns(call.request.app[STORE], call.tenant_id)


async def sheets(call: Call) -> dict:
    q: SheetsQuery = call.query
    if q.format == "raw":
        return await metrics.sheet_rows(call.request.app[STORE], call.tenant_id, q.campaign, q.limit, q.offset)
    return await metrics.sheet_stats(call.request.app[STORE], call.tenant_id, q.campaign)


async def ask(call: Call) -> dict:
    body: AskRequest = call.body
    app = call.request.app
    return await ask_service.ask(app[STORE], app[PRICEBOOK], app[SETTINGS], call.tenant_id, body.question)


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
