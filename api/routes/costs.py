"""Usage ingestion and the contract's cost endpoints."""

from __future__ import annotations

from aiohttp import web

from core.store import usage as ledger
from core.store.timefmt import today_utc

from ..keys import PRICEBOOK, STORE
from ..routing import RequestContext, Route
from ..schemas.costs import (
    AgentCost,
    BreakdownQuery,
    CostSummary,
    SessionCostBreakdown,
    TimelinePoint,
    TimelineQuery,
    UsageEvent,
    UsageEventIn,
)
from ..schemas.sessions import date_bounds
from ..services import usage as usage_service


async def post_usage_event(ctx: RequestContext) -> web.Response:
    app = ctx.request.app
    header_key = ctx.request.headers.get("Idempotency-Key")
    # The body's id is the idempotency key itself, so it is not part of what must match on a replay.
    body_hash = ledger.request_hash({k: v for k, v in ctx.raw_body.items() if k != "id"})
    wire, created = await app[STORE].write(
        usage_service.ingest, app[PRICEBOOK], ctx.tenant_id, ctx.body, header_key, body_hash, ctx.user_id
    )
    return web.json_response(
        UsageEvent.model_validate(wire).model_dump(mode="json"),
        status=201 if created else 200,
        headers={} if created else {"Idempotent-Replayed": "true"},
    )


async def cost_summary(ctx: RequestContext) -> dict:
    month_start = today_utc().replace(day=1).isoformat()
    return await ctx.request.app[STORE].read(ledger.summary, ctx.tenant_id, month_start)


async def cost_timeline(ctx: RequestContext) -> list:
    q: TimelineQuery = ctx.query
    start, end = date_bounds(q)
    return await ctx.request.app[STORE].read(ledger.timeline, ctx.tenant_id, q.period, start, end)


async def cost_by_agent(ctx: RequestContext) -> list:
    return await ctx.request.app[STORE].read(ledger.by_agent, ctx.tenant_id)


async def session_cost_breakdown(ctx: RequestContext) -> dict:
    q: BreakdownQuery = ctx.query
    breakdown = await ctx.request.app[STORE].read(
        lambda db: ledger.session_breakdown(
            db, ctx.tenant_id, ctx.params["id"], limit=q.events_limit, offset=q.events_offset
        )
    )
    return {**breakdown, "events_limit": q.events_limit, "events_offset": q.events_offset}


ROUTES = [
    Route(
        "POST",
        "/api/usage/events",
        post_usage_event,
        "Record a usage event (idempotent)",
        "costs",
        response=UsageEvent,
        body=UsageEventIn,
        status=201,
        also=(200,),
        raw=True,
        exact_numbers=True,
        errors=(404, 409),
    ),
    Route(
        "GET",
        "/api/costs/summary",
        cost_summary,
        "Total, this month's and per-provider costs",
        "costs",
        response=CostSummary,
    ),
    Route(
        "GET",
        "/api/costs/timeline",
        cost_timeline,
        "Costs per day, week or month",
        "costs",
        response=TimelinePoint,
        many=True,
        query=TimelineQuery,
    ),
    Route("GET", "/api/costs/by-agent", cost_by_agent, "Costs per agent", "costs", response=AgentCost, many=True),
    Route(
        "GET",
        "/api/sessions/{id}/cost-breakdown",
        session_cost_breakdown,
        "One session's usage and costs",
        "costs",
        response=SessionCostBreakdown,
        query=BreakdownQuery,
        owns="session",
        owned_param="id",
    ),
]
