"""Autonomite's POST /trigger-agent (voice: the agent dispatched into a room, as the token route does; text: the
agent's answer to a message), the chat websocket /ws/chat/{session_id}, and ending a text conversation."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from aiohttp import WSMsgType, web

from core.jsondepth import TooDeep, loads
from core.store import agents as agents_repo
from core.store import chat as chat_repo
from core.store import sessions as sessions_repo
from core.store.errors import NotFoundError

from ..errors import BadGateway, Conflict, ConnectionLimit
from ..keys import CHAT, SETTINGS, SOCKETS, STORE
from ..routing import RequestContext, Route
from ..schemas.chat import SessionEnded, TriggerAgentRequest, TriggerAgentResponse
from ..services.chat import MAX_MESSAGE_CHARS, LlmFailed, Turn
from ..services.sockets import Holder, Refusal, Scope, TooManySockets, Watch
from ..services.webcalls import refuse_unavailable_agent, start_web_call
from ..websockets import require_websocket, send_quietly

log = logging.getLogger("voxarena.chat")

# Close codes of the chat socket (4000-4999 are the application's): the session is not a text session of yours.
CLOSE_NOT_FOUND = 4404


async def _agent(ctx: RequestContext, body: TriggerAgentRequest) -> dict[str, Any]:
    store = ctx.request.app[STORE]
    if body.agent_slug is not None:
        return await store.read(agents_repo.get_by_slug, ctx.tenant_id, body.agent_slug)
    return await store.read(agents_repo.get, ctx.tenant_id, body.agent_id)


async def trigger_agent(ctx: RequestContext) -> dict:
    body: TriggerAgentRequest = ctx.body
    agent = await _agent(ctx, body)
    refuse_unavailable_agent(agent)
    if body.mode == "voice":
        started = await start_web_call(
            ctx,
            agent,
            body.room_name,
            participant_name=body.user_id,
            user_id=body.user_id,
            conversation_id=body.conversation_id,
            campaign=body.campaign,
        )
        return {
            "success": True,
            "mode": "voice",
            "room_name": started["roomName"],
            "session_id": started["sessionId"],
            "token": started["token"],
            "server_url": started["serverUrl"],
            "identity": started["identity"],
            "agent_id": agent["id"],
            "user_id": body.user_id,
            "conversation_id": body.conversation_id,
        }
    chat = ctx.request.app[CHAT]
    opened = await chat.open_text(
        ctx.tenant_id,
        agent,
        body.session_id,
        user_id=body.user_id,
        conversation_id=body.conversation_id,
        campaign=body.campaign,
    )
    try:
        turn = await chat.message(agent, Turn(session_id=opened.row["id"], content=body.message or ""))
    except LlmFailed as e:
        raise BadGateway(f"the agent could not answer: {e}") from None
    return {
        "success": True,
        "mode": "text",
        "session_id": opened.row["id"],
        "conversation_id": opened.row["conversation_id"],
        "response": turn.reply,
        "timestamp": turn.timestamp,
        "agent_id": agent["id"],
        "user_id": opened.row["user_id"],
        "previous_session_id": opened.previous_session_id,
    }


async def end_session(ctx: RequestContext) -> dict:
    row = await ctx.request.app[STORE].read(sessions_repo.get_row, ctx.params["id"], ctx.tenant_id)
    if row["channel"] != "text":
        raise Conflict(f"session {row['id']} is a call; end it with POST /api/override/end")
    if not await ctx.request.app[CHAT].close(row["id"], reason="closed"):
        raise Conflict(f"session {row['id']} has ended already")
    return {"success": True, "session_id": row["id"], "status": "ended"}


# ---- the chat socket ----


async def chat_socket(ctx: RequestContext) -> web.WebSocketResponse:
    ws = require_websocket(ctx.request)
    app = ctx.request.app
    store, chat, guard, settings = app[STORE], app[CHAT], app[SOCKETS], app[SETTINGS]
    row = await store.read(chat_repo.find_text_session, ctx.tenant_id, ctx.params["session_id"])
    if row is None:  # someone else's, absent, or not a text session: the same answer, before any data
        await ws.prepare(ctx.request)
        await ws.close(code=CLOSE_NOT_FOUND, message=b"session not found")
        return ws
    assert ctx.principal is not None
    holder = Holder(ctx.principal, ctx.tenant_id)
    try:  # each socket may drive LLM turns: capped before the upgrade
        lease = await guard.leases.acquire(
            Scope(f"chat:cred:{holder.credential}", settings.chat_max_connections, "per credential"),
            Scope(f"chat:tenant:{holder.tenant_id}", settings.chat_max_connections_per_tenant, "per tenant"),
        )
    except TooManySockets as e:
        raise ConnectionLimit(f"{e} on /ws/chat") from None
    watch = guard.watch(holder)
    closer: asyncio.Task[None] | None = None
    chat.sockets.add(ws)
    session_id = row["id"]
    try:
        await ws.prepare(ctx.request)
        closer = guard.spawn(_close_when_refused(ws, watch), "chat-socket-closer")
        async for msg in ws:
            if msg.type != WSMsgType.TEXT:
                if msg.type == WSMsgType.BINARY:
                    await send_quietly(ws, {"type": "error", "detail": "send JSON text frames"})
                continue
            session_id = await _on_message(ctx, ws, watch, session_id, msg.data) or session_id
    finally:  # nothing awaited: aiohttp may cancel the handler as the socket closes
        chat.sockets.discard(ws)
        guard.unwatch(watch)
        if closer is not None and watch.refusal is None:
            closer.cancel()  # a refused socket's closer finishes the close handshake (the guard owns it)
        guard.leases.release(lease)
    return ws


async def _close(ws: web.WebSocketResponse, refusal: Refusal) -> None:
    if not ws.closed:
        await ws.close(code=refusal.code, message=refusal.reason.encode())


async def _close_when_refused(ws: web.WebSocketResponse, watch: Watch) -> None:
    await watch.refused.wait()
    assert watch.refusal is not None
    await _close(ws, watch.refusal)


async def _on_message(
    ctx: RequestContext, ws: web.WebSocketResponse, watch: Watch, session_id: str, raw: str
) -> str | None:
    """Handle one client frame; returns the session the conversation goes on in (a new one when it had ended)."""
    chat = ctx.request.app[CHAT]
    try:
        data = loads(raw)
    except TooDeep as e:
        await send_quietly(ws, {"type": "error", "detail": f"the message {e}"})
        return None
    except ValueError:
        await send_quietly(ws, {"type": "error", "detail": "the message is not valid JSON"})
        return None
    kind = data.get("type") if isinstance(data, dict) else None
    if kind == "ping":
        await send_quietly(ws, {"type": "pong"})
        return None
    if kind in ("message", "end"):  # what acts on the session is done with a credential read just now
        refusal = await ctx.request.app[SOCKETS].check(watch.holder)
        if refusal is not None:
            watch.refuse(refusal)
            await _close(ws, refusal)
            return None
    if kind == "end":
        await chat.close(session_id, reason="closed")
        await send_quietly(ws, {"type": "ended", "session_id": session_id})
        await ws.close()
        return None
    if kind != "message":
        await send_quietly(ws, {"type": "error", "detail": "type must be message, ping or end"})
        return None
    content, user_id = data.get("content"), data.get("user_id")
    if not isinstance(content, str) or not content.strip():
        await send_quietly(ws, {"type": "error", "detail": "content must be a non-empty string"})
        return None
    if len(content) > MAX_MESSAGE_CHARS:
        await send_quietly(ws, {"type": "error", "detail": f"content is longer than {MAX_MESSAGE_CHARS} characters"})
        return None
    store = ctx.request.app[STORE]
    current = await store.read(sessions_repo.get_row, session_id, ctx.tenant_id)
    try:
        agent = await store.read(agents_repo.get_row, ctx.tenant_id, current["agent_id"])
        refuse_unavailable_agent(agent)
    except (NotFoundError, Conflict) as e:
        await send_quietly(ws, {"type": "error", "detail": str(e)})
        return None
    opened = await chat.open_text(
        ctx.tenant_id, agent, session_id, user_id=user_id if isinstance(user_id, str) else None, conversation_id=None
    )
    sid = opened.row["id"]
    if sid != session_id:
        await send_quietly(ws, {"type": "session", "session_id": sid, "previous_session_id": session_id})

    async def delta(text: str) -> None:
        await send_quietly(ws, {"type": "delta", "content": text})

    try:
        turn = await chat.message(agent, Turn(session_id=sid, content=content), delta)
    except LlmFailed as e:
        await send_quietly(ws, {"type": "error", "detail": f"the agent could not answer: {e}"})
        return sid
    await send_quietly(
        ws,
        {"type": "message", "content": turn.reply, "role": "assistant", "timestamp": turn.timestamp, "session_id": sid},
    )
    return sid


ROUTES = [
    Route(
        "POST",
        "/trigger-agent",
        trigger_agent,
        "Talk to an agent by voice (a room) or text (its answer)",
        "chat",
        response=TriggerAgentResponse,
        body=TriggerAgentRequest,
        errors=(404, 409, 429, 502, 503),
    ),
    Route(
        "GET",
        "/ws/chat/{session_id}",
        chat_socket,
        "Chat with an agent over a websocket (streamed replies)",
        "chat",
        raw=True,
        status=101,
        errors=(400, 429),
        unowned="checked after the upgrade: a session that is not a text session of yours is closed with 4404",
    ),
    Route(
        "POST",
        "/api/sessions/{id}/end",
        end_session,
        "End a text conversation (it is then analysed)",
        "chat",
        response=SessionEnded,
        owns="session",
        owned_param="id",
        errors=(409,),
    ),
]
