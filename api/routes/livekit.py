"""/api/livekit/token (a caller's way into a room with one of their agents) and /api/livekit/webhook."""

from __future__ import annotations

import logging

import jwt
from livekit import api as lk

from core.livekit import LiveKitGateway
from core.store import agents as agents_repo
from core.store import clients as clients_repo

from ..errors import Unauthorized, Unavailable
from ..keys import GATEWAYS, LIVEKIT, STORE
from ..routing import RequestContext, Route
from ..schemas.livekit import TokenRequest, TokenResponse, WebhookAck
from ..services import webhooks as webhooks_service
from ..services.webcalls import NOT_CONFIGURED, start_web_call

log = logging.getLogger("voxarena.livekit")


async def livekit_token(ctx: RequestContext) -> dict:
    body: TokenRequest = ctx.body
    agent = await ctx.request.app[STORE].read(agents_repo.get_row, ctx.tenant_id, body.agentId)
    return await start_web_call(ctx, agent, body.roomName)


async def _client_gateways(ctx: RequestContext, authorization: str) -> list:
    """The gateways of clients whose LiveKit server signs with the API key this webhook names (its `iss`)."""
    token = authorization.strip()
    if token.lower().startswith("bearer "):
        token = token[7:].strip()
    try:
        api_key = jwt.decode(token, options={"verify_signature": False}).get("iss")
    except jwt.PyJWTError:
        return []
    if not isinstance(api_key, str) or api_key == ctx.request.app[LIVEKIT].api_key:
        return []
    gateways = ctx.request.app[GATEWAYS]
    return [
        await gateways.for_client(c["owner_id"], c["id"])
        for c in await ctx.request.app[STORE].read(clients_repo.with_livekit_key, api_key)
    ]


async def livekit_webhook(ctx: RequestContext) -> dict:
    body = await ctx.request.text()
    authorization = ctx.request.headers.get("Authorization", "")
    default = ctx.request.app[LIVEKIT]
    candidates = ([default] if default.configured else []) + await _client_gateways(ctx, authorization)
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
        ctx.request.app[STORE],
        ctx.request.app[GATEWAYS],
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
