"""/api/v1/clients (Autonomite, 002): the tenant's clients, each optionally with its own LiveKit server. Supabase
settings are accepted and stored (sealed) but voxarena does not use them."""

from __future__ import annotations

from core.store import clients as repo

from ..keys import NETPOLICY, SECRETS, STORE
from ..routing import Owns, RequestContext, Route
from ..schemas.clients import Client, ClientCreate, ClientUpdate
from ..services import clients as service


async def list_clients(ctx: RequestContext) -> list:
    box = ctx.request.app[SECRETS]
    return [service.wire(box, r) for r in await ctx.request.app[STORE].read(repo.list_, ctx.tenant_id)]


async def create_client(ctx: RequestContext) -> dict:
    app = ctx.request.app
    await service.check_urls(app[NETPOLICY], ctx.body.settings)
    return await app[STORE].write(service.create, app[SECRETS], ctx.tenant_id, ctx.body)


async def get_client(ctx: RequestContext) -> dict:
    row = await ctx.request.app[STORE].read(repo.get, ctx.tenant_id, ctx.params["client_id"])
    return service.wire(ctx.request.app[SECRETS], row)


async def update_client(ctx: RequestContext) -> dict:
    app = ctx.request.app
    await service.check_urls(app[NETPOLICY], ctx.body.settings)
    return await app[STORE].write(service.update, app[SECRETS], ctx.tenant_id, ctx.params["client_id"], ctx.body)


_OWN: Owns = {"owns": "client", "owned_param": "client_id"}

ROUTES = [
    Route("GET", "/api/v1/clients", list_clients, "The tenant's clients", "clients", response=Client, many=True),
    Route(
        "POST",
        "/api/v1/clients",
        create_client,
        "Create a client (secrets are write-only)",
        "clients",
        response=Client,
        body=ClientCreate,
        status=201,
        errors=(409,),
    ),
    Route("GET", "/api/v1/clients/{client_id}", get_client, "Get a client", "clients", response=Client, **_OWN),
    Route(
        "PUT",
        "/api/v1/clients/{client_id}",
        update_client,
        "Update a client (a masked secret sent back is kept)",
        "clients",
        response=Client,
        body=ClientUpdate,
        **_OWN,
    ),
]
