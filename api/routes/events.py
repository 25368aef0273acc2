"""The live event stream (003's `GET /events/ws`) and a call's stored events (`GET /api/calls/{call_sid}/events`).

Events are rows the repositories write with the change they report (core/store/events.py), whichever process made
it; the app's EventHub tails them and fans them out here. A subscriber that cannot keep up is closed with 4008, never
waited for."""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any

from aiohttp import WSCloseCode, web

from core.store import campaigns as campaigns_repo
from core.store import events as repo
from core.store import sessions as sessions_repo
from core.store.errors import NotFoundError

from ..errors import BadRequest, ConnectionLimit
from ..keys import EVENTS, SETTINGS, SOCKETS, STORE
from ..routing import RequestContext, Route
from ..schemas.events import CallEvents, CallEventsQuery, EventStreamQuery, event_wire
from ..services.events import Subscriber, TooManyConnections
from ..services.sockets import Holder, Watch

log = logging.getLogger("voxarena.events")

CLOSE_SLOW_CONSUMER = 4008  # its queue overflowed: reconnect, and catch up from GET /api/calls/{call_sid}/events
CLOSE_TIMEOUT = 10.0  # a closing peer that reads nothing for this long is cut off


def _call_or_campaign(db: Any, sid: str, tenant_id: str) -> None:
    """The stream may follow one call (a session) or one campaign (its ``campaign.*`` events) of the tenant;
    NotFoundError otherwise."""
    try:
        sessions_repo.get_row(db, sid, tenant_id)
    except NotFoundError:
        campaigns_repo.get_row(db, tenant_id, sid)


async def call_events(ctx: RequestContext) -> dict:
    q: CallEventsQuery = ctx.query
    sid = ctx.params["call_sid"]
    rows = await ctx.request.app[STORE].read(
        lambda db: repo.for_call(db, ctx.tenant_id, sid, limit=q.limit, after_id=q.after)
    )
    return {"call_sid": sid, "events": [event_wire(r) for r in rows]}


async def stream(ctx: RequestContext) -> web.StreamResponse:
    request, app = ctx.request, ctx.request.app
    q: EventStreamQuery = ctx.query
    if q.call_sid is not None:  # another tenant's call and no call look the same: 404
        await app[STORE].read(_call_or_campaign, q.call_sid, ctx.tenant_id)
    ws = web.WebSocketResponse(
        heartbeat=app[SETTINGS].event_heartbeat_seconds, timeout=CLOSE_TIMEOUT, max_msg_size=64 * 1024
    )
    if not ws.can_prepare(request).ok:
        raise BadRequest("GET /events/ws is a websocket: send Connection: Upgrade and Upgrade: websocket")
    hub = app[EVENTS]
    assert ctx.principal is not None
    credential = ctx.principal.user_id  # a user, or "key:<id>" for an API key
    try:
        hub.admit(credential)
    except TooManyConnections as e:
        raise ConnectionLimit(str(e)) from None
    guard = app[SOCKETS]
    watch = guard.watch(Holder(ctx.principal, ctx.tenant_id))
    try:
        sub = await hub.subscribe(ctx.tenant_id, q.call_sid)
        try:
            await ws.prepare(request)
            await _serve(request, ws, sub, watch)
        finally:
            hub.unsubscribe(sub)
    finally:
        guard.unwatch(watch)
        hub.release(credential)
    return ws


async def _serve(request: web.Request, ws: web.WebSocketResponse, sub: Subscriber, watch: Watch) -> None:
    """Send the subscriber's events until the client leaves, the connection breaks, the hub drops it, or its
    credential is gone (the socket guard's re-check)."""

    async def pump() -> None:
        while (event := await sub.next()) is not None:
            await ws.send_str(json.dumps(event))

    async def read() -> None:
        async for _ in ws:  # clients have nothing to say; pings and the close are handled by aiohttp
            pass

    # the drop is watched apart from the pump: a slow peer's pump may be stuck waiting for its socket to drain
    tasks = {
        asyncio.ensure_future(pump()),
        asyncio.ensure_future(read()),
        asyncio.ensure_future(sub.dropped.wait()),
        asyncio.ensure_future(watch.refused.wait()),
    }
    try:
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    if ws.closed:
        return
    if watch.refusal is not None:
        code, message = watch.refusal.code, watch.refusal.reason.encode()
    elif sub.reason == "slow":
        code, message = CLOSE_SLOW_CONSUMER, b"slow consumer"
    elif sub.reason == "shutdown":
        code, message = WSCloseCode.GOING_AWAY, b"server shutting down"
    else:
        code, message = WSCloseCode.INTERNAL_ERROR, b"stream failed"
    try:
        await asyncio.wait_for(ws.close(code=code, message=message), CLOSE_TIMEOUT)
    except (TimeoutError, ConnectionError):
        if request.transport is not None:  # a peer that reads nothing: drop what is buffered for it
            request.transport.abort()


ROUTES = [
    Route(
        "GET",
        "/events/ws",
        stream,
        "The live event stream (websocket)",
        "events",
        query=EventStreamQuery,
        raw=True,
        status=101,
        errors=(400, 404, 429),
    ),
    Route(
        "GET",
        "/api/calls/{call_sid}/events",
        call_events,
        "A call's stored events, in order",
        "calls",
        response=CallEvents,
        query=CallEventsQuery,
        owns="session",
        owned_param="call_sid",
    ),
]
