"""/api/keys: the tenant's API keys (for servers and WordPress sites), shown once, revoked at once."""

from __future__ import annotations

from core.store import apikeys as repo
from core.store import tenants as tenants_repo

from ..errors import Forbidden
from ..keys import STORE, TENANTS
from ..routing import RequestContext, Route
from ..schemas.apikeys import ApiKeyCreate, ApiKeyList, NewApiKey, key_wire
from ..schemas.common import Success


def _users_only(ctx: RequestContext) -> None:
    assert ctx.principal is not None
    if ctx.principal.key_id is not None:  # a leaked key must not be able to mint its own successors
        raise Forbidden("API keys are managed by signed-in users, not by API keys")


async def create_key(ctx: RequestContext) -> dict:
    _users_only(ctx)
    personal = ctx.tenancy is not None and ctx.tenancy.tenant["personal_of"] == ctx.user_id

    def create(db):
        if personal:  # a key acts for a stored tenant: store the personal one on its first key
            tenants_repo.ensure_personal(db, ctx.user_id)
        return repo.create(db, ctx.tenant_id, ctx.body.name, ctx.user_id)

    record, key = await ctx.request.app[STORE].write(create)
    if personal:
        ctx.request.app[TENANTS].changed(ctx.tenant_id)  # stored now, no longer the unstored default
    return {**key_wire(record), "key": key}


async def list_keys(ctx: RequestContext) -> dict:
    rows = await ctx.request.app[STORE].read(repo.list_, ctx.tenant_id)
    return {"keys": [key_wire(r) for r in rows], "total": len(rows)}


async def delete_key(ctx: RequestContext) -> dict:
    _users_only(ctx)
    try:
        await ctx.request.app[STORE].write(repo.revoke, ctx.tenant_id, ctx.params["id"])
    finally:  # whatever the write's outcome, no key is trusted from memory after it
        ctx.request.app[TENANTS].keys_revoked()
    return {"success": True}


ROUTES = [
    Route(
        "POST",
        "/api/keys",
        create_key,
        "Create an API key (the key is shown once)",
        "keys",
        response=NewApiKey,
        body=ApiKeyCreate,
        status=201,
        errors=(403,),
    ),
    Route("GET", "/api/keys", list_keys, "The tenant's API keys (no secrets)", "keys", response=ApiKeyList),
    Route(
        "DELETE",
        "/api/keys/{id}",
        delete_key,
        "Revoke an API key, at once",
        "keys",
        response=Success,
        owns="api_key",
        owned_param="id",
        errors=(403,),
    ),
]
