"""004's ingest routes, called by automation workflows with the tenant's API key as `x-webhook-token`."""

from __future__ import annotations

from ..keys import PRICEBOOK, STORE
from ..routing import RequestContext, Route
from ..schemas.ingest import CostIngested, OutreachIngested
from ..services import ingest

_ERRORS = (400, 401, 413)


async def _costs(ctx: RequestContext, source: str) -> dict:
    app = ctx.request.app
    raw = await ctx.request.read()
    return await ingest.ingest_costs(
        app[STORE],
        app[PRICEBOOK],
        ctx.tenant_id,
        raw,
        idempotency_key=ctx.request.headers.get("Idempotency-Key"),
        source=source,
    )


async def post_cost_events(ctx: RequestContext) -> dict:
    return await _costs(ctx, "cost-events")


async def post_llm_usage(ctx: RequestContext) -> dict:
    return await _costs(ctx, "llm-usage")


async def post_events(ctx: RequestContext) -> dict:
    raw = await ctx.request.read()
    return await ingest.ingest_outreach(
        ctx.request.app[STORE], ctx.tenant_id, raw, idempotency_key=ctx.request.headers.get("Idempotency-Key")
    )


ROUTES = [
    Route(
        "POST",
        "/api/cost-events",
        post_cost_events,
        "Record costs incurred outside the calls (004)",
        "metrics",
        response=CostIngested,
        errors=_ERRORS,
        seed_errors=True,
    ),
    Route(
        "POST",
        "/api/llm-usage",
        post_llm_usage,
        "Record LLM costs (004's legacy route)",
        "metrics",
        response=CostIngested,
        errors=_ERRORS,
        seed_errors=True,
    ),
    Route(
        "POST",
        "/api/events",
        post_events,
        "Record outreach events: sent, delivered, replied, opt_out, bounced",
        "metrics",
        response=OutreachIngested,
        errors=_ERRORS,
        seed_errors=True,
    ),
]
