"""/api/livekit/token (a caller's way into a room with one of their agents) and /api/livekit/webhook."""

from __future__ import annotations

import logging
import uuid

import jwt
from aiohttp import web
from livekit import api as lk

from core.dispatch_meta import DispatchMeta
from core.livekit import LiveKitGateway, UpstreamFailed
from core.store import agents as agents_repo
from core.store import clients as clients_repo
from core.store import dispatch as dispatch_repo
from core.store import sessions as sessions_repo

from ..errors import BadGateway, Conflict, Unauthorized, Unavailable
from ..keys import GATEWAYS, LIVEKIT, STORE, WORKER_CAPACITY
from ..routing import Call, Route
from ..schemas.livekit import TokenRequest, TokenResponse, WebhookAck
from ..services import webhooks as webhooks_service

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


async def call_gateway(call: Call, agent: dict):
    """Where the agent's calls run: its client's own LiveKit server, or the product's."""
    if agent["client_id"] is None:
        return product_gateway(call.request)
    client = await call.request.app[STORE].read(clients_repo.get, call.tenant_id, agent["client_id"])
    if not client["active"]:
        raise Conflict(f"client {client['id']} is inactive")
    gw = await call.request.app[GATEWAYS].for_client(call.tenant_id, client["id"])
    if not gw.configured:
        raise Unavailable(NOT_CONFIGURED)
    return gw


async def livekit_token(call: Call) -> dict:
    body: TokenRequest = call.body
    agent = await call.request.app[STORE].read(agents_repo.get_row, call.tenant_id, body.agentId)
    return await start_web_call(call, agent, body.roomName)


async def start_web_call(
    call: Call,
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
    store = call.request.app[STORE]
    refuse_unavailable_agent(agent)
    gw = await call_gateway(call, agent)
    if gw is call.request.app[LIVEKIT]:  # this process's worker serves the product's LiveKit only
        await refuse_when_no_worker(call.request)
    room = room_name or f"vx-{uuid.uuid4().hex[:12]}"
    session_id = str(uuid.uuid4())
    identity = f"caller-{uuid.uuid4().hex[:8]}"

    def reserve(db) -> None:
        # A room belongs to one tenant while a call is live in it: another tenant's token must not join it.
        if sessions_repo.room_taken_by_other(db, room, call.tenant_id):
            raise Conflict(f"room {room} is in use")
        sessions_repo.reserve_call_slot(db, call.tenant_id)
        sessions_repo.create(
            db,
            owner_id=call.tenant_id,
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
    metadata = DispatchMeta(agent_id=agent["id"], session_id=session_id, owner_id=call.tenant_id, direction="inbound")
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
    token = gw.participant_token(identity=identity, name=participant_name or call.user_id, room=room)
    return {"token": token, "roomName": room, "sessionId": session_id, "serverUrl": gw.url, "identity": identity}


async def _client_gateways(call: Call, authorization: str) -> list:
    """The gateways of clients whose LiveKit server signs with the API key this webhook names (its `iss`)."""
    token = authorization.strip()
    if token.lower().startswith("bearer "):
        token = token[7:].strip()
    try:
        api_key = jwt.decode(token, options={"verify_signature": False}).get("iss")
    except jwt.PyJWTError:
        return []
    if not isinstance(api_key, str) or api_key == call.request.app[LIVEKIT].api_key:
        return []
    gateways = call.request.app[GATEWAYS]
    return [
        await gateways.for_client(c["owner_id"], c["id"])
        for c in await call.request.app[STORE].read(clients_repo.with_livekit_key, api_key)
    ]


async def livekit_webhook(call: Call) -> dict:
    body = await call.request.text()
    authorization = call.request.headers.get("Authorization", "")
    default = call.request.app[LIVEKIT]
    candidates = ([default] if default.configured else []) + await _client_gateways(call, authorization)
    if not candidates:
        raise Unavailable(NOT_CONFIGURED)
    event = None
    for gw in candidates:  # the product's server, or a client's own one
        try:
            event = gw.verify_webhook(body, authorization)
            break
        except Exception as e:
            rejected = e
    if event is None:
        raise Unauthorized(f"webhook signature rejected: {rejected}") from None
    fresh = await webhooks_service.apply(
        call.request.app[STORE],
        call.request.app[GATEWAYS],
        _event_dict(event),
        signer_key=gw.api_key,
        signed_by=lambda g: _verifies(g, body, authorization),
    )
    return {"received": True, "duplicate": not fresh}


def _verifies(gw: LiveKitGateway, body: str, authorization: str) -> bool:
    try:
        gw.verify_webhook(body, authorization)
    except Exception:
        return False
    return True


def _event_dict(event: lk.WebhookEvent) -> dict:
    participant = event.participant
    return {
        "id": event.id,
        "event": event.event,
        "room": event.room.name if event.HasField("room") else None,
        "created_at": event.created_at,
        "participant_identity": participant.identity if event.HasField("participant") else None,
        "participant_kind": int(participant.kind) if event.HasField("participant") else None,
        "participant_attributes": dict(participant.attributes) if event.HasField("participant") else {},
    }


ROUTES = [
    Route(
        "POST",
        "/api/livekit/token",
        livekit_token,
        "A LiveKit token to call one of your agents",
        "livekit",
        response=TokenResponse,
        body=TokenRequest,
        errors=(404, 409, 429, 502, 503),
    ),
    Route(
        "POST",
        "/api/livekit/webhook",
        livekit_webhook,
        "LiveKit webhook receiver (signed by LiveKit)",
        "livekit",
        response=WebhookAck,
        public=True,
        errors=(401, 503),
    ),
]
