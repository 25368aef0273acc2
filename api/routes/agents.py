"""/api/agents: CRUD on the caller's agents."""

from __future__ import annotations

from ..keys import STORE
from ..routing import Call, Route
from ..schemas.agents import Agent, AgentCreate, AgentList, AgentUpdate
from ..schemas.common import Success
from ..store import agents as repo


async def list_agents(call: Call) -> dict:
    return await call.request.app[STORE].read(repo.list_, call.user_id)


async def create_agent(call: Call) -> dict:
    return await call.request.app[STORE].write(repo.create, call.user_id, call.body.model_dump())


async def get_agent(call: Call) -> dict:
    return await call.request.app[STORE].read(repo.get, call.user_id, call.params["id"])


async def update_agent(call: Call) -> dict:
    return await call.request.app[STORE].write(repo.update, call.user_id, call.params["id"], call.body.changes())


async def delete_agent(call: Call) -> dict:
    await call.request.app[STORE].write(repo.delete, call.user_id, call.params["id"])
    return {"success": True}


ROUTES = [
    Route("GET", "/api/agents", list_agents, "List your agents", "agents", response=AgentList),
    Route("POST", "/api/agents", create_agent, "Create an agent", "agents", response=Agent, body=AgentCreate, status=201),
    Route("GET", "/api/agents/{id}", get_agent, "Get an agent", "agents", response=Agent, owned_param="id"),
    Route("PUT", "/api/agents/{id}", update_agent, "Update an agent", "agents", response=Agent, body=AgentUpdate,
          owned_param="id"),
    Route("DELETE", "/api/agents/{id}", delete_agent, "Delete an agent", "agents", response=Success, owned_param="id"),
]
