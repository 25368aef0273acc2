"""Phony's (003) phone numbers: /api/phone-numbers. A number is registered by the tenant, assigned to one of its
agents (its inbound calls then dispatch that agent), released, unregistered; LiveKit's trunk and dispatch rule are
kept in step by the service."""

from __future__ import annotations

from core.store import agents as agents_repo
from core.store import phone_numbers as repo

from ..keys import SETTINGS, STORE
from ..routing import Owns, RequestContext, Route
from ..schemas.phone_numbers import (
    Assigned,
    AssignRequest,
    PhoneNumber,
    PhoneNumberCreate,
    Released,
    Unregistered,
    number_wire,
    path_number,
)
from ..services import phone_numbers as service
from ..services.webcalls import product_gateway, refuse_unavailable_agent


async def register_number(ctx: RequestContext) -> dict:
    body: PhoneNumberCreate = ctx.body
    app = ctx.request.app
    row = await service.register(
        app[STORE],
        product_gateway(ctx.request),
        app[SETTINGS],
        owner_id=ctx.tenant_id,
        phone_number=body.phone_number,
        friendly_name=body.friendly_name,
        capabilities=list(dict.fromkeys(body.capabilities)),
    )
    return number_wire(row)


async def list_numbers(ctx: RequestContext) -> list:
    return [number_wire(r) for r in await ctx.request.app[STORE].read(repo.list_, ctx.tenant_id)]


async def assign_number(ctx: RequestContext) -> dict:
    body: AssignRequest = ctx.body
    store = ctx.request.app[STORE]
    number = path_number(ctx.params["phone_number"])
    agent = await store.read(agents_repo.get_row, ctx.tenant_id, body.agent_id)
    refuse_unavailable_agent(agent)
    await service.assign(
        store, product_gateway(ctx.request), owner_id=ctx.tenant_id, phone_number=number, agent_id=body.agent_id
    )
    return {"message": "Phone number assigned successfully", "agent_id": body.agent_id, "phone_number": number}


async def release_number(ctx: RequestContext) -> dict:
    number = path_number(ctx.params["phone_number"])
    await service.release(
        ctx.request.app[STORE], product_gateway(ctx.request), owner_id=ctx.tenant_id, phone_number=number
    )
    return {"message": "Phone number released successfully", "phone_number": number}


async def unregister_number(ctx: RequestContext) -> dict:
    number = path_number(ctx.params["phone_number"])
    await service.unregister(
        ctx.request.app[STORE], product_gateway(ctx.request), owner_id=ctx.tenant_id, phone_number=number
    )
    return {"success": True, "message": f"Phone number {number} unregistered"}


_OWN: Owns = {"owns": "phone_number", "owned_param": "phone_number"}

ROUTES = [
    Route(
        "POST",
        "/api/phone-numbers",
        register_number,
        "Register a phone number for inbound calls",
        "numbers",
        response=PhoneNumber,
        body=PhoneNumberCreate,
        status=201,
        errors=(409, 502, 503),
    ),
    Route(
        "GET",
        "/api/phone-numbers/available",
        list_numbers,
        "The tenant's phone numbers (Phony shape)",
        "numbers",
        response=PhoneNumber,
        many=True,
    ),
    Route(
        "POST",
        "/api/phone-numbers/{phone_number}/assign",
        assign_number,
        "Answer a number's calls with an agent",
        "numbers",
        response=Assigned,
        body=AssignRequest,
        errors=(409, 502, 503),
        **_OWN,
    ),
    Route(
        "POST",
        "/api/phone-numbers/{phone_number}/release",
        release_number,
        "No agent answers this number",
        "numbers",
        response=Released,
        errors=(502, 503),
        **_OWN,
    ),
    Route(
        "DELETE",
        "/api/phone-numbers/{phone_number}",
        unregister_number,
        "Unregister a phone number",
        "numbers",
        response=Unregistered,
        errors=(502, 503),
        **_OWN,
    ),
]
