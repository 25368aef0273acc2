"""/tenants (Phony, 003): tenants, their limits and members. Platform admins manage every tenant; a tenant's
owners rename it and manage its members; limits, status and rate limits are the admins' alone."""

from __future__ import annotations

from core.store import tenants as repo

from ..errors import Forbidden
from ..keys import STORE, TENANTS
from ..routing import Call, Owns, Route
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


async def _stored(call: Call) -> str:
    """The path's tenant, its row created first when it is the caller's own personal tenant (first use)."""
    tenant_id = call.params["tenant_id"]
    assert call.principal is not None
    if call.principal.key_id is None and tenant_id == repo.personal_tenant_id(call.principal.user_id):
        await call.request.app[STORE].write(repo.ensure_personal, call.principal.user_id)
        call.request.app[TENANTS].changed(tenant_id)
    return tenant_id


async def _require_admin(call: Call, what: str) -> None:
    assert call.principal is not None
    if not await call.request.app[TENANTS].is_admin(call.principal):
        raise Forbidden(f"{what} is for platform admins")


async def _require_owner(call: Call, tenant_id: str, what: str) -> None:
    """An admin, or an owner of the tenant (an API key acts as neither)."""
    assert call.principal is not None
    tenants = call.request.app[TENANTS]
    if call.principal.key_id is None and await tenants.is_admin(call.principal):
        return
    if call.principal.key_id is None and await tenants.role(tenant_id, call.principal.user_id) == "owner":
        await _refuse_if_suspended(call, tenant_id)
        return
    raise Forbidden(f"{what} is for the tenant's owners and platform admins")


async def _refuse_if_suspended(call: Call, tenant_id: str) -> None:
    """A suspended tenant's owners and members still read it (to see that it is suspended) but change nothing;
    only a platform admin acts on it (and lifts the suspension)."""
    tenant = await call.request.app[TENANTS].record(tenant_id)
    if tenant is not None:
        refuse_suspended(tenant)


async def create_tenant(call: Call) -> dict:
    await _require_admin(call, "creating a tenant")
    body: TenantCreate = call.body
    data = body.model_dump(exclude={"owner_user_id"})
    row = await call.request.app[STORE].write(lambda db: repo.create(db, data, owner_user_id=body.owner_user_id))
    return tenant_wire(row)


async def list_tenants(call: Call) -> list:
    await _require_admin(call, "listing every tenant")
    return [tenant_wire(r) for r in await call.request.app[STORE].read(repo.list_)]


async def get_tenant(call: Call) -> dict:
    return tenant_wire(await call.request.app[STORE].read(repo.get, await _stored(call)))


async def update_tenant(call: Call) -> dict:
    tenant_id = await _stored(call)
    body: TenantUpdate = call.body
    changes = body.changes()
    admin_only = sorted(set(changes) & set(ADMIN_FIELDS))
    if admin_only:
        await _require_admin(call, f"changing {', '.join(admin_only)}")
    else:
        await _require_owner(call, tenant_id, "changing a tenant")
    row = await call.request.app[STORE].write(repo.update, tenant_id, changes)
    call.request.app[TENANTS].changed(tenant_id)
    return tenant_wire(row)


async def add_member(call: Call) -> dict:
    await _require_owner(call, call.params["tenant_id"], "adding members")
    tenant_id = await _stored(call)
    body: MemberCreate = call.body
    row = await call.request.app[STORE].write(repo.add_member, tenant_id, body.user_id, body.role)
    call.request.app[TENANTS].changed(tenant_id)
    return row


async def list_members(call: Call) -> dict:
    rows = await call.request.app[STORE].read(repo.members, await _stored(call))
    return {"members": rows, "total": len(rows)}


async def remove_member(call: Call) -> dict:
    tenant_id, user_id = call.params["tenant_id"], call.params["user_id"]
    assert call.principal is not None
    if call.principal.user_id != user_id:  # anyone may leave; removing others is for owners
        await _require_owner(call, tenant_id, "removing members")
    elif not await call.request.app[TENANTS].is_admin(call.principal):
        await _refuse_if_suspended(call, tenant_id)
    await call.request.app[STORE].write(repo.remove_member, tenant_id, user_id)
    call.request.app[TENANTS].changed(tenant_id)
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
