"""Outbound calls, both of 001's ways: /api/calls/* (uppercase `call_status`, callbacks) and /api/telephony/*
(lowercase `status`). Same calls, same checks: the agent must be the tenant's and able to take calls, the tenant
within its concurrent-call limit, a worker free."""

from __future__ import annotations

from core import phone_calls
from core.control import ControlMessage, Say, SendDtmf, Transfer, UpdateContext
from core.netpolicy import AddressRefused
from core.sip_uri import SipUri, checked_address, transfer_policy, transfer_uri
from core.store import agents as agents_repo
from core.store import call_views
from core.store import calls as repo
from core.store import events as events_repo
from core.store import sessions as sessions_repo

from ..errors import BadGateway, Conflict, NotFound, ValidationFailed
from ..keys import GATEWAYS, NETPOLICY, SECRETS, SETTINGS, STORE
from ..routing import Owns, RequestContext, Route
from ..schemas.calls import (
    CallbackDelivery,
    CallbackSecret,
    CallStatusResponse,
    OutboundCallRequest,
    OutboundCallResponse,
    TelephonyCallRequest,
    TelephonyCallResponse,
    TelephonyStatusResponse,
    delivery_wire,
    status_wire,
    telephony_wire,
)
from ..schemas.common import Success, merge_variables
from ..schemas.live import (
    AgentCallRequest,
    AgentCallResponse,
    CallHistory,
    ContextUpdate,
    ContextUpdated,
    HistoryQuery,
    LiveCall,
    OverrideDone,
    OverrideDtmf,
    OverrideEnd,
    OverrideText,
    OverrideTransfer,
    live_call_wire,
)
from ..schemas.sessions import date_bounds
from ..services import callbacks, outbound
from ..services.webcalls import product_gateway, refuse_unavailable_agent, refuse_when_no_worker


async def _place(
    ctx: RequestContext,
    agent_id: str,
    phone_number: str,
    callback_url: str | None,
    context: dict | None = None,
    campaign: str | None = None,
) -> dict:
    app = ctx.request.app
    gateway = product_gateway(ctx.request)
    agent = await app[STORE].read(agents_repo.get_row, ctx.tenant_id, agent_id)
    refuse_unavailable_agent(agent)
    if callback_url is not None:
        await callbacks.check_url(app[NETPOLICY], callback_url)
    await refuse_when_no_worker(ctx.request)
    return await outbound.place(
        app[STORE],
        gateway,
        app[SETTINGS],
        owner_id=ctx.tenant_id,
        agent_id=agent_id,
        phone_number=phone_number,
        callback_url=callback_url,
        context=context,
        campaign=campaign,
    )


async def place_call(ctx: RequestContext) -> dict:
    body: OutboundCallRequest = ctx.body
    context = merge_variables(None, body.variables)
    row = await _place(ctx, body.agent_id, body.phone_number, body.callback_url, context, campaign=body.campaign)
    return {
        "call_id": row["id"],
        "room_name": row["room_name"],
        "status": row["status"],
        "session_id": row["session_id"],
    }


async def call_status(ctx: RequestContext) -> dict:
    return status_wire(await ctx.request.app[STORE].read(repo.get, ctx.tenant_id, ctx.params["id"]))


async def end_call(ctx: RequestContext) -> dict:
    await outbound.hang_up(
        ctx.request.app[STORE],
        product_gateway(ctx.request),
        owner_id=ctx.tenant_id,
        call_id=ctx.params.get("id") or ctx.params["call_id"],
    )
    return {"success": True}


async def list_callbacks(ctx: RequestContext) -> list:
    rows = await ctx.request.app[STORE].read(repo.deliveries, ctx.tenant_id, ctx.params["id"])
    return [delivery_wire(r) for r in rows]


async def get_secret(ctx: RequestContext) -> dict:
    app = ctx.request.app
    return {"secret": await app[STORE].write(repo.callback_secret, app[SECRETS], ctx.tenant_id)}


async def rotate_secret(ctx: RequestContext) -> dict:
    app = ctx.request.app
    return {"secret": await app[STORE].write(repo.rotate_callback_secret, app[SECRETS], ctx.tenant_id)}


async def telephony_place(ctx: RequestContext) -> dict:
    body: TelephonyCallRequest = ctx.body
    row = await _place(
        ctx, body.agent_id, body.phone_number, None, merge_variables(None, body.variables), body.campaign
    )
    return {
        "call_id": row["id"],
        "status": phone_calls.TELEPHONY_STATUS[row["status"]],
        "session_id": row["session_id"],
    }


async def telephony_status(ctx: RequestContext) -> dict:
    row = await ctx.request.app[STORE].read(repo.get, ctx.tenant_id, ctx.params["call_id"])
    return telephony_wire(row)


# ---- Phony (003): an agent's call, calls now and before ----


async def agent_call(ctx: RequestContext) -> dict:
    body: AgentCallRequest = ctx.body
    row = await _place(ctx, ctx.params["agent_id"], body.to_number, None, body.merged_context(), body.campaign)
    return {
        "call_sid": row["session_id"],
        "status": "queued",
        "message": f"Call to {body.to_number} queued",
        "call_id": row["id"],
    }


async def active_calls(ctx: RequestContext) -> list:
    rows = await ctx.request.app[STORE].read(call_views.active_calls, ctx.tenant_id)
    return [live_call_wire(r) for r in rows]


async def call_history(ctx: RequestContext) -> dict:
    q: HistoryQuery = ctx.query
    start, end = date_bounds(q)
    listed = await ctx.request.app[STORE].read(
        lambda db: call_views.call_history(
            db, ctx.tenant_id, agent_id=q.agent_id, start=start, end_exclusive=end, limit=q.limit, offset=q.offset
        )
    )
    return {
        "calls": [live_call_wire(r, with_cost=True) for r in listed["calls"]],
        "total": listed["total"],
        "limit": q.limit,
        "offset": q.offset,
    }


async def update_context(ctx: RequestContext) -> dict:
    """Stored first (the active-calls view shows it at once), then sent to the call's job through LiveKit."""
    app = ctx.request.app
    body: ContextUpdate = ctx.body
    sid = ctx.params["call_sid"]
    row = await app[STORE].write(call_views.merge_context, ctx.tenant_id, sid, body.context)
    gateway = await app[GATEWAYS].for_session(row)
    try:
        await gateway.send_control(row["room_name"], UpdateContext(row["context"]))
    except Exception as e:
        raise BadGateway(f"context stored, but LiveKit could not deliver it to the call: {e}") from None
    return {"message": "Context updated", "call_sid": sid, "context": row["context"]}


# ---- supervisor controls (Phony's /api/override/*): through the same control channel as the context ----


async def _live(ctx: RequestContext, sid: str) -> dict:
    row = await ctx.request.app[STORE].read(sessions_repo.get_row, sid, ctx.tenant_id)
    if row["status"] != "active":
        raise NotFound(f"call {sid} is not live")
    return row


async def record_override(ctx: RequestContext, call_sid: str, kind: str, data: dict) -> None:
    """A supervisor's command as the call's event ``override.<kind>`` (text, dtmf, end, transfer), with who sent it:
    recorded once the command is accepted (the call is live, the input valid), before it is sent, so the audit
    trail keeps an attempt LiveKit then failed to deliver (that request answers 502)."""
    assert ctx.principal is not None
    sent_by = {"sent_by": ctx.principal.user_id, "key_id": ctx.principal.key_id}
    await ctx.request.app[STORE].write(
        lambda db: events_repo.record_override(db, ctx.tenant_id, call_sid, kind, data, sent_by=sent_by)
    )


async def _control(ctx: RequestContext, row: dict, message: ControlMessage) -> None:
    gateway = await ctx.request.app[GATEWAYS].for_session(row)
    try:
        await gateway.send_control(row["room_name"], message)
    except Exception as e:
        raise BadGateway(f"LiveKit could not deliver the command to the call: {e}") from None


async def override_text(ctx: RequestContext) -> dict:
    body: OverrideText = ctx.body
    row = await _live(ctx, body.call_sid)
    await record_override(ctx, body.call_sid, "text", {"text": body.text})
    await _control(ctx, row, Say(body.text))
    return {"success": True, "call_sid": body.call_sid, "message": "The agent is saying it"}


def _require_phone_call(row: dict, what: str) -> None:
    if not row["outbound_phone_number"] and row["phone_number_id"] is None:  # neither dialled nor to a number
        raise Conflict(f"call {row['id']} is not a phone call: {what} needs one")


async def override_dtmf(ctx: RequestContext) -> dict:
    body: OverrideDtmf = ctx.body
    row = await _live(ctx, body.call_sid)
    _require_phone_call(row, "DTMF")
    await record_override(ctx, body.call_sid, "dtmf", {"digit": body.digit})
    await _control(ctx, row, SendDtmf(body.digit))
    return {"success": True, "call_sid": body.call_sid, "message": f"DTMF {body.digit} sent"}


async def override_transfer(ctx: RequestContext) -> dict:
    """Cold (the default): the job asks LiveKit to transfer its SIP participant (a SIP REFER to the caller's side);
    when the far end accepts, the call ends `transferred`. Warm: the caller is put on hold while the agent calls the
    target and briefs them, and the two are connected when the target accepts. A refused or failed transfer leaves
    the call up with the agent, and says why in the job's log and on the session's events."""
    body: OverrideTransfer = ctx.body
    row = await _live(ctx, body.call_sid)
    _require_phone_call(row, "a transfer")
    if body.mode == "warm" and body.target.startswith("sip"):
        # the product's own SIP bridge dials it: checked here to answer at once, and again by the job at the dial
        try:
            uri = SipUri.parse(body.target)
            app = ctx.request.app
            await checked_address(transfer_policy(app[SETTINGS], lookup=app[NETPOLICY].lookup), uri)
        except (ValueError, AddressRefused) as e:
            raise ValidationFailed(f"body target: {e}") from None
    await record_override(ctx, body.call_sid, "transfer", {"target": body.target, "mode": body.mode})
    await _control(ctx, row, Transfer(transfer_uri(body.target), mode=body.mode))
    what = "Warm transfer to" if body.mode == "warm" else "Transferring to"
    return {"success": True, "call_sid": body.call_sid, "message": f"{what} {body.target}"}


async def override_end(ctx: RequestContext) -> dict:
    body: OverrideEnd = ctx.body
    row = await _live(ctx, body.call_sid)
    await record_override(ctx, body.call_sid, "end", {})
    app = ctx.request.app
    phone = await app[STORE].read(repo.live_for_session, body.call_sid)
    if phone is not None and phone["status"] not in phone_calls.TERMINAL:
        await outbound.hang_up(app[STORE], product_gateway(ctx.request), owner_id=ctx.tenant_id, call_id=phone["id"])
    else:  # a web call: closing the room ends it (the job records the end)
        gateway = await app[GATEWAYS].for_session(row)
        try:
            await gateway.delete_room(row["room_name"])
        except Exception as e:
            raise BadGateway(f"LiveKit could not close the call's room: {e}") from None
    return {"success": True, "call_sid": body.call_sid, "message": "Call ended"}


_OWN: Owns = {"owns": "call", "owned_param": "id"}
_OWN_T: Owns = {"owns": "call", "owned_param": "call_id"}
_PLACE_ERRORS = (400, 403, 404, 409, 429, 503)

ROUTES = [
    Route(
        "POST",
        "/api/agents/{agent_id}/call",
        agent_call,
        "Call a number with this agent (Phony shape)",
        "calls",
        response=AgentCallResponse,
        body=AgentCallRequest,
        status=201,
        errors=_PLACE_ERRORS,
        owns="agent",
        owned_param="agent_id",
    ),
    Route(
        "GET",
        "/api/calls/active",
        active_calls,
        "The tenant's calls in progress (Phony shape)",
        "calls",
        response=LiveCall,
        many=True,
    ),
    Route(
        "PUT",
        "/api/calls/{call_sid}/context",
        update_context,
        "Merge into a live call's context",
        "calls",
        response=ContextUpdated,
        body=ContextUpdate,
        errors=(502,),
        owns="session",
        owned_param="call_sid",
    ),
    Route(
        "POST",
        "/api/override/text",
        override_text,
        "Have the agent say this now",
        "override",
        response=OverrideDone,
        body=OverrideText,
        errors=(404, 502),
    ),
    Route(
        "POST",
        "/api/override/dtmf",
        override_dtmf,
        "Send a DTMF digit into a phone call",
        "override",
        response=OverrideDone,
        body=OverrideDtmf,
        errors=(404, 409, 502),
    ),
    Route(
        "POST",
        "/api/override/transfer",
        override_transfer,
        "Transfer a phone call (cold: SIP REFER; warm: the agent briefs the human first)",
        "override",
        response=OverrideDone,
        body=OverrideTransfer,
        errors=(404, 409, 502),
    ),
    Route(
        "POST",
        "/api/override/end",
        override_end,
        "End a live call",
        "override",
        response=OverrideDone,
        body=OverrideEnd,
        errors=(404, 409, 502),
    ),
    Route(
        "GET",
        "/api/calls/history",
        call_history,
        "The tenant's ended calls with their cost (Phony shape)",
        "calls",
        response=CallHistory,
        query=HistoryQuery,
    ),
    Route(
        "POST",
        "/api/calls/outbound",
        place_call,
        "Call a phone number with one of your agents",
        "calls",
        response=OutboundCallResponse,
        body=OutboundCallRequest,
        status=201,
        errors=_PLACE_ERRORS,
    ),
    Route(
        "GET",
        "/api/calls/callback-secret",
        get_secret,
        "The secret your callbacks are signed with",
        "calls",
        response=CallbackSecret,
    ),
    Route(
        "POST",
        "/api/calls/callback-secret",
        rotate_secret,
        "Rotate the callback signing secret",
        "calls",
        response=CallbackSecret,
    ),
    Route(
        "GET",
        "/api/calls/{id}/status",
        call_status,
        "An outbound call's status",
        "calls",
        response=CallStatusResponse,
        **_OWN,
    ),
    Route(
        "POST",
        "/api/calls/{id}/end",
        end_call,
        "Hang up an outbound call",
        "calls",
        response=Success,
        errors=(409, 502, 503),
        **_OWN,
    ),
    Route(
        "GET",
        "/api/calls/{id}/callbacks",
        list_callbacks,
        "Every callback attempt of a call",
        "calls",
        response=CallbackDelivery,
        many=True,
        **_OWN,
    ),
    Route(
        "POST",
        "/api/telephony/outbound/call",
        telephony_place,
        "Call a phone number (telephony shape)",
        "telephony",
        response=TelephonyCallResponse,
        body=TelephonyCallRequest,
        status=201,
        errors=_PLACE_ERRORS,
    ),
    Route(
        "GET",
        "/api/telephony/outbound/call/{call_id}/status",
        telephony_status,
        "A call's status (telephony)",
        "telephony",
        response=TelephonyStatusResponse,
        **_OWN_T,
    ),
    Route(
        "POST",
        "/api/telephony/outbound/call/{call_id}/end",
        end_call,
        "Hang up a call (telephony)",
        "telephony",
        response=Success,
        errors=(409, 502, 503),
        **_OWN_T,
    ),
]
