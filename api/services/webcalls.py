"""Starting a web call (the token route and /trigger-agent's voice mode) and the checks every call start shares:
the agent takes calls, a worker is free, the LiveKit server the agent's calls run on (its client's own or the
product's), the tenant's call limit; the session reserved, the agent dispatched, undone when the dispatch fails."""

from __future__ import annotations

import logging
import uuid

from aiohttp import web

from core.dispatch_meta import DispatchMeta
from core.livekit import UpstreamFailed
from core.store import clients as clients_repo
from core.store import dispatch as dispatch_repo
from core.store import sessions as sessions_repo

from ..errors import BadGateway, Conflict, Unavailable
from ..keys import GATEWAYS, LIVEKIT, STORE, WORKER_CAPACITY
from ..routing import RequestContext

log = logging.getLogger("voxarena.livekit")

RETRY_AFTER_SECONDS = 5
NOT_CONFIGURED = "LiveKit is not configured (set VOXARENA_LIVEKIT_URL, _API_KEY and _API_SECRET)"


def refuse_unavailable_agent(agent: dict) -> None:
    """A disabled (002) or inactive (003) agent takes no calls."""
    if not agent["enabled"]:
        raise Conflict(f"agent {agent['id']} is disabled")
    if agent["status"] != "active":
        raise Conflict(f"agent {agent['id']} is {agent['status']}")


async def refuse_when_no_worker(request: web.Request) -> None:
    """No worker of this process can take a call: say so now (503), not after the caller waited in silence."""
    capacity = request.app.get(WORKER_CAPACITY)
    if capacity is not None:
        full = await capacity()
        if full is not None:
            raise Unavailable(f"no agent worker can take a call now: {full}", retry_after=RETRY_AFTER_SECONDS)


def product_gateway(request: web.Request):
    gw = request.app.get(LIVEKIT)
    if gw is None or not gw.configured:
        raise Unavailable(NOT_CONFIGURED)
    return gw


async def call_gateway(ctx: RequestContext, agent: dict):
    """Where the agent's calls run: its client's own LiveKit server, or the product's."""
    if agent["client_id"] is None:
        return product_gateway(ctx.request)
    client = await ctx.request.app[STORE].read(clients_repo.get, ctx.tenant_id, agent["client_id"])
    if not client["active"]:
        raise Conflict(f"client {client['id']} is inactive")
    gw = await ctx.request.app[GATEWAYS].for_client(ctx.tenant_id, client["id"])
    if not gw.configured:
        raise Unavailable(NOT_CONFIGURED)
    return gw


async def start_web_call(
    ctx: RequestContext,
    agent: dict,
    room_name: str | None,
    *,
    participant_name: str | None = None,
    user_id: str | None = None,
    conversation_id: str | None = None,
    campaign: str | None = None,
) -> dict:
    """A caller's way into a room with the agent (the token route, and /trigger-agent's voice mode): the agent
    must take calls, a worker must be free, the tenant's call limit holds; the session is reserved and the agent
    dispatched before the caller gets a token."""
    store = ctx.request.app[STORE]
    refuse_unavailable_agent(agent)
    gw = await call_gateway(ctx, agent)
    if gw is ctx.request.app[LIVEKIT]:  # this process's worker serves the product's LiveKit only
        await refuse_when_no_worker(ctx.request)
    room = room_name or f"vx-{uuid.uuid4().hex[:12]}"
    session_id = str(uuid.uuid4())
    identity = f"caller-{uuid.uuid4().hex[:8]}"

    def reserve(db) -> None:
        # A room belongs to one tenant while a call is live in it: another tenant's token must not join it.
        if sessions_repo.room_taken_by_other(db, room, ctx.tenant_id):
            raise Conflict(f"room {room} is in use")
        sessions_repo.reserve_call_slot(db, ctx.tenant_id)
        sessions_repo.create(
            db,
            owner_id=ctx.tenant_id,
            agent_id=agent["id"],
            session_id=session_id,
            room_name=room,
            direction="inbound",
            client_id=agent["client_id"],
            channel="voice",
            user_id=user_id,
            conversation_id=conversation_id,
            campaign=campaign,
        )

    await store.write(reserve)
    metadata = DispatchMeta(agent_id=agent["id"], session_id=session_id, owner_id=ctx.tenant_id, direction="inbound")
    try:
        dispatch_id = await gw.dispatch(room=room, metadata=metadata)
        await store.write(dispatch_repo.record_dispatch, session_id, dispatch_id)
    except Exception as e:
        reason = str(e)
        log.error("agent dispatch to room %s failed: %s", room, reason)
        await store.write(lambda db: sessions_repo.end(db, session_id, reason="dispatch_failed", error=reason))
        if isinstance(e, UpstreamFailed):  # a tenant's own server: one answer whatever failed (no network oracle)
            raise BadGateway(reason) from None
        raise Unavailable(f"could not dispatch the agent through LiveKit: {reason}") from None
    token = gw.participant_token(identity=identity, name=participant_name or ctx.user_id, room=room)
    return {"token": token, "roomName": room, "sessionId": session_id, "serverUrl": gw.url, "identity": identity}
