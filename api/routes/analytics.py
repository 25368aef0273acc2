"""003's call analytics, with cost per successful call."""

from __future__ import annotations

from ..keys import SETTINGS, STORE
from ..routing import RequestContext, Route
from ..schemas.metrics import AgentAnalytics, AnalyticsQuery, AnalyticsSummary
from ..services import analytics


async def analytics_summary(ctx: RequestContext) -> dict:
    q: AnalyticsQuery = ctx.query
    return await analytics.summary(
        ctx.request.app[STORE],
        ctx.tenant_id,
        ctx.request.app[SETTINGS].success_outcomes,
        period=q.period,
        tenant_id=q.tenant_id,
    )


async def agent_analytics(ctx: RequestContext) -> dict:
    q: AnalyticsQuery = ctx.query
    return await analytics.agent(
        ctx.request.app[STORE],
        ctx.tenant_id,
        ctx.params["agent_id"],
        ctx.request.app[SETTINGS].success_outcomes,
        period=q.period,
    )


ROUTES = [
    Route(
        "GET",
        "/api/analytics/summary",
        analytics_summary,
        "Calls, minutes, success rate and top agents",
        "analytics",
        response=AnalyticsSummary,
        query=AnalyticsQuery,
        errors=(404,),
    ),
    Route(
        "GET",
        "/api/analytics/agents/{agent_id}",
        agent_analytics,
        "One agent's calls, success and cost",
        "analytics",
        response=AgentAnalytics,
        query=AnalyticsQuery,
        owns="agent",
        owned_param="agent_id",
    ),
]
