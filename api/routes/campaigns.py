"""Campaigns (``/api/campaigns/*``; 004's ``GET /api/campaigns`` list lives with the metrics and lists these too)
and the tenant's do-not-call list. The dialer itself is api/services/dialer.py."""

from __future__ import annotations

from typing import Any

from core.store import agents as agents_repo
from core.store import campaigns as repo
from core.store.errors import NotFoundError

from ..errors import Unavailable, ValidationFailed
from ..keys import NETPOLICY, SETTINGS, STORE
from ..routing import Owns, RequestContext, Route
from ..schemas.campaigns import (
    Campaign,
    CampaignAction,
    CampaignCreate,
    ContactPage,
    ContactQuery,
    ContactsAdded,
    ContactsIn,
    DoNotCallIn,
    DoNotCallList,
    campaign_wire,
    contact_wire,
    number_problem,
)
from ..schemas.common import Deleted
from ..services import callbacks
from ..services.outbound import NO_TRUNK


async def _campaign(ctx: RequestContext, campaign_id: str) -> dict[str, Any]:
    app = ctx.request.app
    success = app[SETTINGS].success_outcomes
    return campaign_wire(await app[STORE].read(repo.get, ctx.tenant_id, campaign_id, success))


async def create_campaign(ctx: RequestContext) -> dict:
    body: CampaignCreate = ctx.body
    app = ctx.request.app
    try:
        await app[STORE].read(agents_repo.get_row, ctx.tenant_id, body.agent_id)
    except NotFoundError:  # another tenant's agent too: a body naming what the caller cannot use
        raise ValidationFailed(f"body agent_id: agent {body.agent_id} not found") from None
    if body.callback_url is not None:
        await callbacks.check_url(app[NETPOLICY], body.callback_url)
    data = body.model_dump()
    created = await app[STORE].write(repo.create, ctx.tenant_id, data)
    return await _campaign(ctx, created["id"])


async def get_campaign(ctx: RequestContext) -> dict:
    return await _campaign(ctx, ctx.params["id"])


async def list_contacts(ctx: RequestContext) -> dict:
    q: ContactQuery = ctx.query
    page = await ctx.request.app[STORE].read(
        lambda db: repo.contacts_page(db, ctx.tenant_id, ctx.params["id"], page=q.page, limit=q.limit)
    )
    return {"contacts": [contact_wire(c) for c in page["contacts"]], "total": page["total"]}


async def add_contacts(ctx: RequestContext) -> dict:
    body: ContactsIn = ctx.body
    contacts = [c.model_dump() for c in body.contacts]
    return await ctx.request.app[STORE].write(repo.add_contacts, ctx.tenant_id, ctx.params["id"], contacts)


def _action(name: str) -> Any:
    async def act(ctx: RequestContext) -> dict:
        app = ctx.request.app
        if name in ("start", "resume") and not app[SETTINGS].sip_outbound_trunk_id:
            raise Unavailable(NO_TRUNK)  # before anything is dialled
        status = await app[STORE].write(repo.act, ctx.tenant_id, ctx.params["id"], name)
        return {"id": ctx.params["id"], "status": status}

    act.__name__ = f"{name}_campaign"
    return act


async def delete_campaign(ctx: RequestContext) -> dict:
    await ctx.request.app[STORE].write(repo.delete, ctx.tenant_id, ctx.params["id"])
    return {"success": True, "message": "campaign deleted"}


async def list_dnc(ctx: RequestContext) -> dict:
    return {"numbers": await ctx.request.app[STORE].read(repo.dnc_list, ctx.tenant_id)}


async def add_dnc(ctx: RequestContext) -> dict:
    body: DoNotCallIn = ctx.body
    store = ctx.request.app[STORE]
    added = await store.write(repo.dnc_add, ctx.tenant_id, body.phone_numbers)
    return {"numbers": await store.read(repo.dnc_list, ctx.tenant_id), "added": added}


async def remove_dnc(ctx: RequestContext) -> dict:
    number = ctx.params["phone_number"]
    if number_problem(number) is not None:
        raise ValidationFailed(f"path phone_number: {number_problem(number)}")
    await ctx.request.app[STORE].write(repo.dnc_remove, ctx.tenant_id, number)
    return {"success": True, "message": f"{number} removed from the do-not-call list"}


_OWN: Owns = {"owns": "campaign", "owned_param": "id"}

ROUTES = [
    Route(
        "POST",
        "/api/campaigns",
        create_campaign,
        "Create a campaign (draft) with its contacts",
        "campaigns",
        response=Campaign,
        body=CampaignCreate,
        status=201,
        errors=(409,),
    ),
    Route(
        "GET",
        "/api/campaigns/{id}",
        get_campaign,
        "A campaign, its progress and costs",
        "campaigns",
        response=Campaign,
        **_OWN,
    ),
    Route(
        "DELETE",
        "/api/campaigns/{id}",
        delete_campaign,
        "Delete a campaign that is not running or paused (its contacts and attempts; its calls keep their sessions)",
        "campaigns",
        response=Deleted,
        errors=(409,),
        **_OWN,
    ),
    Route(
        "GET",
        "/api/campaigns/{id}/contacts",
        list_contacts,
        "A campaign's contacts (a page) with every attempt",
        "campaigns",
        response=ContactPage,
        query=ContactQuery,
        **_OWN,
    ),
    Route(
        "POST",
        "/api/campaigns/{id}/contacts",
        add_contacts,
        "Add contacts (JSON, or text/csv with a phone_number column)",
        "campaigns",
        response=ContactsAdded,
        body=ContactsIn,
        errors=(409,),
        **_OWN,
    ),
    *[
        Route(
            "POST",
            f"/api/campaigns/{{id}}/{name}",
            _action(name),
            f"{name.capitalize()} a campaign",
            "campaigns",
            response=CampaignAction,
            errors=(409, 503) if name in ("start", "resume") else (409,),
            **_OWN,
        )
        for name in ("start", "pause", "resume", "cancel")
    ],
    Route("GET", "/api/do-not-call", list_dnc, "The tenant's do-not-call list", "campaigns", response=DoNotCallList),
    Route(
        "POST",
        "/api/do-not-call",
        add_dnc,
        "Add numbers to the do-not-call list",
        "campaigns",
        response=DoNotCallList,
        body=DoNotCallIn,
    ),
    Route(
        "DELETE",
        "/api/do-not-call/{phone_number}",
        remove_dnc,
        "Take a number off the do-not-call list",
        "campaigns",
        response=Deleted,
        unowned="a phone number, looked up in the caller's own list: another tenant's entry is a 404",
    ),
]
