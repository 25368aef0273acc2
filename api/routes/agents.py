"""/api/agents (001, with 002's and 003's fields added) and /api/v1/agents (002's snake_case shape): CRUD on the
tenant's agents. Both paths are one set of agents."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from core.store import agents as repo

from ..keys import AGENT_LISTS, STORE
from ..routing import Call, Owns, Route, send_json
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


async def list_agents(call: Call) -> web.StreamResponse:
    app = call.request.app
    q: AgentQuery = call.query
    if q.tenant_id is not None and q.tenant_id != call.tenant_id:
        payload = AgentList(agents=[], total=0).model_dump_json().encode()
    else:
        filters = {k: v for k, v in (("status", q.status), ("agent_type", q.type)) if v is not None}
        payload = await service.list_json(
            app[STORE], app[AGENT_LISTS], call.tenant_id, page=q.page, limit=q.limit, **filters
        )
    return await send_json(call.request, payload)


async def _write(call: Call, fn: Any, *args: Any) -> Any:
    app = call.request.app
    return await service.write(app[STORE], app[AGENT_LISTS], call.tenant_id, fn, *args)


async def create_agent(call: Call) -> dict:
    data = {k: v for k, v in call.body.model_dump().items() if v is not None}
    return agent_wire(await _write(call, repo.create, storage(data)))


async def get_agent(call: Call) -> dict:
    return agent_wire(await call.request.app[STORE].read(repo.get, call.tenant_id, call.params["id"]))


async def update_agent(call: Call) -> dict:
    return agent_wire(await _write(call, repo.update, call.params["id"], storage(call.body.changes())))


async def delete_agent(call: Call) -> dict:
    await _write(call, repo.delete, call.params["id"])
    return {"success": True, "message": "Agent deleted successfully"}


# ---- /api/v1/agents (002) ----


async def list_v1(call: Call) -> web.StreamResponse:
    q: AgentV1Query = call.query
    filters = {k: v for k, v in (("client_id", q.client_id), ("enabled", q.active)) if v is not None}
    payload = await call.request.app[STORE].read(
        lambda db: service.list_v1_json(db, call.tenant_id, page=q.page, limit=q.limit, **filters)
    )
    return await send_json(call.request, payload)


async def create_v1(call: Call) -> dict:
    return agent_v1_wire(await _write(call, repo.create, call.body.to_storage()))


async def get_v1(call: Call) -> dict:
    return agent_v1_wire(await call.request.app[STORE].read(repo.get, call.tenant_id, call.params["agent_id"]))


async def update_v1(call: Call) -> dict:
    return agent_v1_wire(await _write(call, repo.update, call.params["agent_id"], call.body.to_storage()))


async def delete_v1(call: Call) -> dict:
    await _write(call, repo.delete, call.params["agent_id"])
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
