"""The ownership checks the route table runs before a handler: a path id names an object of the caller's tenant,
or the request is a 404 (someone else's object and no object look the same)."""

from __future__ import annotations

from core.store import agents, apikeys, calls, campaigns, clients, phone_numbers, sessions
from core.store.tenants import personal_tenant_id

from .errors import NotFound
from .keys import STORE, TENANTS
from .routing import RequestContext, ownership
from .schemas.phone_numbers import path_number


@ownership("agent")
async def _agent(ctx: RequestContext, agent_id: str) -> None:
    await ctx.request.app[STORE].read(agents.get_row, ctx.tenant_id, agent_id)


@ownership("campaign")
async def _campaign(ctx: RequestContext, campaign_id: str) -> None:
    await ctx.request.app[STORE].read(campaigns.get_row, ctx.tenant_id, campaign_id)


@ownership("session")
async def _session(ctx: RequestContext, session_id: str) -> None:
    await ctx.request.app[STORE].read(sessions.get_row, session_id, ctx.tenant_id)


@ownership("api_key")
async def _api_key(ctx: RequestContext, key_id: str) -> None:
    if not await ctx.request.app[STORE].read(apikeys.exists, ctx.tenant_id, key_id):
        raise NotFound(f"API key {key_id} not found")


@ownership("client")
async def _client(ctx: RequestContext, client_id: str) -> None:
    if not await ctx.request.app[STORE].read(clients.exists, ctx.tenant_id, client_id):
        raise NotFound(f"client {client_id} not found")


@ownership("call")
async def _call(ctx: RequestContext, call_id: str) -> None:
    if not await ctx.request.app[STORE].read(calls.exists, ctx.tenant_id, call_id):
        raise NotFound(f"call {call_id} not found")


@ownership("phone_number")
async def _phone_number(ctx: RequestContext, raw: str) -> None:
    number = path_number(raw)
    if not await ctx.request.app[STORE].read(phone_numbers.exists, ctx.tenant_id, number):
        raise NotFound(f"phone number {number} is not registered")


@ownership("tenant")
async def _tenant(ctx: RequestContext, tenant_id: str) -> None:
    """Admins see every tenant; a user sees the tenants they belong to; an API key only its own."""
    assert ctx.principal is not None
    tenants = ctx.request.app[TENANTS]
    p = ctx.principal
    if p.key_id is not None:
        visible = p.tenant_id == tenant_id
    else:
        visible = await tenants.is_admin(p) or await tenants.role(tenant_id, p.user_id) is not None
    personal = p.key_id is None and tenant_id == personal_tenant_id(p.user_id)  # stored on first use
    if not visible or (not personal and await tenants.record(tenant_id) is None):
        raise NotFound(f"tenant {tenant_id} not found")
