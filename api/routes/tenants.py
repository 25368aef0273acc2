"""/tenants (Phony, 003): tenants, their limits and members. Platform admins manage every tenant; a tenant's
owners rename it and manage its members; limits, status and rate limits are the admins' alone."""

from __future__ import annotations

from core.store import tenants as repo

from ..errors import Forbidden
from ..keys import STORE, TENANTS
from ..routing import Owns, RequestContext, Route
from ..schemas.common import Success
from ..schemas.tenants import (
    ADMIN_FIELDS,
    Member,
    MemberCreate,
    MemberList,
    Tenant,
    TenantCreate,
    TenantUpdate,
    tenant_wire,
)
from ..tenancy import refuse_suspended


async def _stored(ctx: RequestContext) -> str:
    """The path's tenant, its row created first when it is the caller's own personal tenant (first use)."""
    tenant_id = ctx.params["tenant_id"]
    assert ctx.principal is not None
    if ctx.principal.key_id is None and tenant_id == repo.personal_tenant_id(ctx.principal.user_id):
        await ctx.request.app[STORE].write(repo.ensure_personal, ctx.principal.user_id)
        ctx.request.app[TENANTS].changed(tenant_id)
    return tenant_id


async def _require_admin(ctx: RequestContext, what: str) -> None:
    assert ctx.principal is not None
    if not await ctx.request.app[TENANTS].is_admin(ctx.principal):
        raise Forbidden(f"{what} is for platform admins")


async def _require_owner(ctx: RequestContext, tenant_id: str, what: str) -> None:
    """An admin, or an owner of the tenant (an API key acts as neither)."""
    assert ctx.principal is not None
    tenants = ctx.request.app[TENANTS]
    if ctx.principal.key_id is None and await tenants.is_admin(ctx.principal):
        return
    if ctx.principal.key_id is None and await tenants.role(tenant_id, ctx.principal.user_id) == "owner":
        await _refuse_if_suspended(ctx, tenant_id)
        return
    raise Forbidden(f"{what} is for the tenant's owners and platform admins")


async def _refuse_if_suspended(ctx: RequestContext, tenant_id: str) -> None:
    """A suspended tenant's owners and members still read it (to see that it is suspended) but change nothing;
    only a platform admin acts on it (and lifts the suspension)."""
    tenant = await ctx.request.app[TENANTS].record(tenant_id)
    if tenant is not None:
        refuse_suspended(tenant)


async def create_tenant(ctx: RequestContext) -> dict:
    await _require_admin(ctx, "creating a tenant")
    body: TenantCreate = ctx.body
    data = body.model_dump(exclude={"owner_user_id"})
    row = await ctx.request.app[STORE].write(lambda db: repo.create(db, data, owner_user_id=body.owner_user_id))
    return tenant_wire(row)


async def list_tenants(ctx: RequestContext) -> list:
    await _require_admin(ctx, "listing every tenant")
    return [tenant_wire(r) for r in await ctx.request.app[STORE].read(repo.list_)]


async def get_tenant(ctx: RequestContext) -> dict:
    return tenant_wire(await ctx.request.app[STORE].read(repo.get, await _stored(ctx)))


async def update_tenant(ctx: RequestContext) -> dict:
    tenant_id = await _stored(ctx)
    body: TenantUpdate = ctx.body
    changes = body.changes()
    admin_only = sorted(set(changes) & set(ADMIN_FIELDS))
    if admin_only:
        await _require_admin(ctx, f"changing {', '.join(admin_only)}")
    else:
        await _require_owner(ctx, tenant_id, "changing a tenant")
    row = await ctx.request.app[STORE].write(repo.update, tenant_id, changes)
    ctx.request.app[TENANTS].changed(tenant_id)
    return tenant_wire(row)


async def add_member(ctx: RequestContext) -> dict:
    await _require_owner(ctx, ctx.params["tenant_id"], "adding members")
    tenant_id = await _stored(ctx)
    body: MemberCreate = ctx.body
    row = await ctx.request.app[STORE].write(repo.add_member, tenant_id, body.user_id, body.role)
    ctx.request.app[TENANTS].changed(tenant_id)
    return row


async def list_members(ctx: RequestContext) -> dict:
    rows = await ctx.request.app[STORE].read(repo.members, await _stored(ctx))
    return {"members": rows, "total": len(rows)}


async def remove_member(ctx: RequestContext) -> dict:
    tenant_id, user_id = ctx.params["tenant_id"], ctx.params["user_id"]
    assert ctx.principal is not None
    if ctx.principal.user_id != user_id:  # anyone may leave; removing others is for owners
        await _require_owner(ctx, tenant_id, "removing members")
    elif not await ctx.request.app[TENANTS].is_admin(ctx.principal):
        await _refuse_if_suspended(ctx, tenant_id)
    await ctx.request.app[STORE].write(repo.remove_member, tenant_id, user_id)
    ctx.request.app[TENANTS].changed(tenant_id)
    return {"success": True}


_T: Owns = {"owns": "tenant", "owned_param": "tenant_id", "tenant_scoped": False}

ROUTES = [
    Route(
        "POST",
        "/tenants",
        create_tenant,
        "Create a tenant (admins)",
        "tenants",
        response=Tenant,
        body=TenantCreate,
        status=201,
        tenant_scoped=False,
        errors=(403, 409),
    ),
    Route(
        "GET",
        "/tenants",
        list_tenants,
        "Every tenant (admins)",
        "tenants",
        response=Tenant,
        many=True,
        tenant_scoped=False,
        errors=(403,),
    ),
    Route(
        "GET",
        "/tenants/{tenant_id}",
        get_tenant,
        "A tenant you belong to (or any, for admins)",
        "tenants",
        response=Tenant,
        **_T,
    ),
    Route(
        "PATCH",
        "/tenants/{tenant_id}",
        update_tenant,
        "Change a tenant (limits and status: admins)",
        "tenants",
        response=Tenant,
        body=TenantUpdate,
        errors=(403,),
        **_T,
    ),
    Route(
        "POST",
        "/tenants/{tenant_id}/members",
        add_member,
        "Add a member, or change their role",
        "tenants",
        response=Member,
        body=MemberCreate,
        status=201,
        errors=(403,),
        **_T,
    ),
    Route(
        "GET",
        "/tenants/{tenant_id}/members",
        list_members,
        "The tenant's members",
        "tenants",
        response=MemberList,
        **_T,
    ),
    Route(
        "DELETE",
        "/tenants/{tenant_id}/members/{user_id}",
        remove_member,
        "Remove a member (or leave)",
        "tenants",
        response=Success,
        errors=(403, 409),
        **_T,
    ),
]
