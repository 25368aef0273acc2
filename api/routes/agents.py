"""/api/agents: CRUD on the caller's agents."""

from __future__ import annotations

from aiohttp import web

from ..keys import AGENT_LISTS, STORE
from ..routing import Call, Route
from ..schemas.agents import Agent, AgentCreate, AgentList, AgentUpdate
from ..schemas.common import Success
from ..services import agents as service
from ..store import agents as repo


async def list_agents(call: Call) -> web.Response:
    app = call.request.app
    payload = await service.list_json(app[STORE], app[AGENT_LISTS], call.user_id)
    return web.Response(body=payload, content_type="application/json")


async def create_agent(call: Call) -> dict:
    app = call.request.app
    return await service.write(app[STORE], app[AGENT_LISTS], call.user_id, repo.create, call.body.model_dump())


async def get_agent(call: Call) -> dict:
    return await call.request.app[STORE].read(repo.get, call.user_id, call.params["id"])


async def update_agent(call: Call) -> dict:
    app = call.request.app
    return await service.write(app[STORE], app[AGENT_LISTS], call.user_id, repo.update, call.params["id"],
                               call.body.changes())


async def delete_agent(call: Call) -> dict:
    app = call.request.app
    await service.write(app[STORE], app[AGENT_LISTS], call.user_id, repo.delete, call.params["id"])
    return {"success": True}


ROUTES = [
    # The list is served as the cached bytes (raw), still documented and checked against AgentList.
    Route("GET", "/api/agents", list_agents, "List your agents", "agents", response=AgentList, raw=True),
    Route("POST", "/api/agents", create_agent, "Create an agent", "agents", response=Agent, body=AgentCreate, status=201),
    Route("GET", "/api/agents/{id}", get_agent, "Get an agent", "agents", response=Agent, owned_param="id"),
    Route("PUT", "/api/agents/{id}", update_agent, "Update an agent", "agents", response=Agent, body=AgentUpdate,
          owned_param="id"),
    Route("DELETE", "/api/agents/{id}", delete_agent, "Delete an agent", "agents", response=Success, owned_param="id"),
]
