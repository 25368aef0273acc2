"""/api/agents (001, with 002's and 003's fields added) and /api/v1/agents (002's snake_case shape): CRUD on the
tenant's agents. Both paths are one set of agents."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from core.store import agents as repo

from ..keys import AGENT_LISTS, NETPOLICY, SECRETS, STORE
from ..routing import Owns, RequestContext, Route, send_json
from ..schemas.agents import (
    Agent,
    AgentCreate,
    AgentList,
    AgentQuery,
    AgentUpdate,
    AgentV1,
    AgentV1Create,
    AgentV1Query,
    AgentV1Update,
    agent_v1_wire,
    agent_wire,
    storage,
)
from ..schemas.common import Deleted
from ..services import agents as service


async def list_agents(ctx: RequestContext) -> web.StreamResponse:
    app = ctx.request.app
    q: AgentQuery = ctx.query
    if q.tenant_id is not None and q.tenant_id != ctx.tenant_id:
        payload = AgentList(agents=[], total=0).model_dump_json().encode()
    else:
        filters = {k: v for k, v in (("status", q.status), ("agent_type", q.type)) if v is not None}
        payload = await service.list_json(
            app[STORE], app[AGENT_LISTS], ctx.tenant_id, page=q.page, limit=q.limit, **filters
        )
    return await send_json(ctx.request, payload)


async def _write(ctx: RequestContext, fn: Any, *args: Any) -> Any:
    app = ctx.request.app
    return await service.write(app[STORE], app[AGENT_LISTS], ctx.tenant_id, fn, *args)


async def _create(ctx: RequestContext, data: dict[str, Any]) -> dict[str, Any]:
    """A new agent from storage terms: its tools' URLs checked, their header values sealed."""
    app = ctx.request.app
    await service.check_urls(app[NETPOLICY], data)
    return await _write(ctx, service.create_with_tools(app[SECRETS]), data)


async def _update(ctx: RequestContext, agent_id: str, changes: dict[str, Any]) -> dict[str, Any]:
    app = ctx.request.app
    await service.check_urls(app[NETPOLICY], changes)
    return await _write(ctx, service.update_with_tools(app[SECRETS]), agent_id, changes)


async def create_agent(ctx: RequestContext) -> dict:
    data = {k: v for k, v in ctx.body.model_dump().items() if v is not None}
    return agent_wire(await _create(ctx, storage(data)))


async def get_agent(ctx: RequestContext) -> dict:
    return agent_wire(await ctx.request.app[STORE].read(repo.get, ctx.tenant_id, ctx.params["id"]))


async def update_agent(ctx: RequestContext) -> dict:
    return agent_wire(await _update(ctx, ctx.params["id"], storage(ctx.body.changes())))


async def delete_agent(ctx: RequestContext) -> dict:
    await _write(ctx, repo.delete, ctx.params["id"])
    return {"success": True, "message": "Agent deleted successfully"}


# ---- /api/v1/agents (002) ----


async def list_v1(ctx: RequestContext) -> web.StreamResponse:
    q: AgentV1Query = ctx.query
    filters = {k: v for k, v in (("client_id", q.client_id), ("enabled", q.active)) if v is not None}
    payload = await ctx.request.app[STORE].read(
        lambda db: service.list_v1_json(db, ctx.tenant_id, page=q.page, limit=q.limit, **filters)
    )
    return await send_json(ctx.request, payload)


async def create_v1(ctx: RequestContext) -> dict:
    return agent_v1_wire(await _create(ctx, ctx.body.to_storage()))


async def get_v1(ctx: RequestContext) -> dict:
    return agent_v1_wire(await ctx.request.app[STORE].read(repo.get, ctx.tenant_id, ctx.params["agent_id"]))


async def update_v1(ctx: RequestContext) -> dict:
    return agent_v1_wire(await _update(ctx, ctx.params["agent_id"], ctx.body.to_storage()))


async def delete_v1(ctx: RequestContext) -> dict:
    await _write(ctx, repo.delete, ctx.params["agent_id"])
    return {"success": True, "message": "Agent deleted successfully"}


_OWN: Owns = {"owns": "agent", "owned_param": "id"}
_OWN_V1: Owns = {"owns": "agent", "owned_param": "agent_id"}

ROUTES = [
    # Lists are serialised off the loop and sent as bytes (raw), still documented and checked against their models.
    Route(
        "GET",
        "/api/agents",
        list_agents,
        "List your agents (a page)",
        "agents",
        response=AgentList,
        query=AgentQuery,
        raw=True,
    ),
    Route(
        "POST",
        "/api/agents",
        create_agent,
        "Create an agent",
        "agents",
        response=Agent,
        body=AgentCreate,
        status=201,
        errors=(403, 409),
    ),
    Route("GET", "/api/agents/{id}", get_agent, "Get an agent", "agents", response=Agent, **_OWN),
    Route(
        "PUT",
        "/api/agents/{id}",
        update_agent,
        "Update an agent",
        "agents",
        response=Agent,
        body=AgentUpdate,
        errors=(409,),
        **_OWN,
    ),
    Route("DELETE", "/api/agents/{id}", delete_agent, "Delete an agent", "agents", response=Deleted, **_OWN),
    Route(
        "GET",
        "/api/v1/agents",
        list_v1,
        "List agents (Autonomite shape; a page)",
        "agents-v1",
        response=AgentV1,
        many=True,
        query=AgentV1Query,
        raw=True,
    ),
    Route(
        "POST",
        "/api/v1/agents",
        create_v1,
        "Create an agent (Autonomite shape)",
        "agents-v1",
        response=AgentV1,
        body=AgentV1Create,
        status=201,
        errors=(403, 409),
    ),
    Route(
        "GET",
        "/api/v1/agents/{agent_id}",
        get_v1,
        "Get an agent (Autonomite shape)",
        "agents-v1",
        response=AgentV1,
        **_OWN_V1,
    ),
    Route(
        "PUT",
        "/api/v1/agents/{agent_id}",
        update_v1,
        "Update an agent (Autonomite shape)",
        "agents-v1",
        response=AgentV1,
        body=AgentV1Update,
        errors=(409,),
        **_OWN_V1,
    ),
    Route(
        "DELETE", "/api/v1/agents/{agent_id}", delete_v1, "Delete an agent", "agents-v1", response=Deleted, **_OWN_V1
    ),
]
