"""Twilio ConversationRelay (`WS /relay/ws`, Phony's), its one-time URLs, and the tenant's Twilio settings.

The protocol (Twilio's): after the handshake Twilio sends `setup`, then `prompt` (the caller's words; `last: false`
for partial prompts), `interrupt` (the caller spoke over the agent: `utteranceUntilInterrupt` is what was heard),
`dtmf` and `error`. We send `text` tokens (`{type: "text", token, last}`, the reply streamed as the LLM writes it)
and `end` (`handoffData`, JSON) to hand the call back to Twilio's next TwiML verb."""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any

from aiohttp import WSMsgType, web

from core.jsondepth import loads
from core.pipeline import agent_spec
from core.secrets import mask
from core.store import agents as agents_repo
from core.store import sessions as sessions_repo
from core.store import twilio as twilio_repo
from core.store.errors import LimitError
from core.store.timefmt import now_iso
from core.variables import call_values, fill
from pipelines.config import DEFAULT_ERROR_MESSAGE

from ..errors import Conflict, Forbidden, Unauthorized
from ..keys import CHAT, SECRETS, SETTINGS, STORE
from ..routing import RequestContext, Route
from ..schemas.chat import TwilioSettings, TwilioSettingsBody
from ..schemas.relay import RelayUrl, RelayUrlRequest
from ..services import relay as relay_service
from ..services.chat import ChatService, LlmFailed, Turn
from ..services.webcalls import refuse_unavailable_agent
from ..websockets import require_websocket, send_quietly

log = logging.getLogger("voxarena.relay")

SETUP_TIMEOUT_SECONDS = 10.0
CLOSE_BAD_SETUP = 4400


async def put_twilio_settings(ctx: RequestContext) -> dict:
    body: TwilioSettingsBody = ctx.body
    sealed = ctx.request.app[SECRETS].seal(body.auth_token)
    updated = await ctx.request.app[STORE].write(twilio_repo.set_auth_token, ctx.tenant_id, sealed)
    return {"configured": True, "auth_token": mask(body.auth_token), "updated_at": updated}


async def get_twilio_settings(ctx: RequestContext) -> dict:
    row = await ctx.request.app[STORE].read(twilio_repo.get, ctx.tenant_id)
    if row is None:
        return {"configured": False, "auth_token": None, "updated_at": None}
    return {
        "configured": True,
        "auth_token": mask(ctx.request.app[SECRETS].open(row["auth_token"])),
        "updated_at": row["updated_at"],
    }


async def create_relay_url(ctx: RequestContext) -> dict:
    body: RelayUrlRequest = ctx.body
    app = ctx.request.app
    store, settings = app[STORE], app[SETTINGS]
    if body.agent_id is not None:
        agent = await store.read(agents_repo.get_row, ctx.tenant_id, body.agent_id)
    else:
        agent = await store.read(agents_repo.get_by_slug, ctx.tenant_id, body.agent_slug)
    refuse_unavailable_agent(agent)
    if await store.read(twilio_repo.get, ctx.tenant_id) is None:
        raise Conflict("set the tenant's Twilio auth token first (PUT /api/settings/twilio): it signs the call")
    return await relay_service.new_url(
        store, ctx.tenant_id, agent["id"], public_base=settings.base_url, ttl_seconds=settings.relay_url_ttl_seconds
    )


async def relay_socket(ctx: RequestContext) -> web.WebSocketResponse:
    request = ctx.request
    ws = require_websocket(request)
    sig = request.headers.get("X-Twilio-Signature", "").strip()
    if not sig:
        raise Unauthorized("missing X-Twilio-Signature")
    urls = relay_service.signed_urls(public_base=request.app[SETTINGS].base_url, path_qs=request.path_qs)
    try:  # before the upgrade: a refused handshake holds no socket and creates nothing
        agent = await relay_service.admit(
            request.app[STORE], request.app[SECRETS], ticket=request.query.get("ticket", ""), urls=urls, sig=sig
        )
    except relay_service.TenantSuspended as e:
        err = Forbidden(str(e))
        err.type = "tenant_suspended"
        raise err from None
    except relay_service.RelayRefused as e:
        raise Forbidden(str(e)) from None
    await ws.prepare(request)
    chat = request.app[CHAT]
    chat.sockets.add(ws)
    try:
        await _serve(request.app, chat, ws, agent)
    finally:
        chat.sockets.discard(ws)
    return ws


async def _first_message(ws: web.WebSocketResponse) -> dict[str, Any] | None:
    try:
        msg = await ws.receive(timeout=SETUP_TIMEOUT_SECONDS)
    except TimeoutError:
        return None
    if msg.type != WSMsgType.TEXT:
        return None
    try:
        data = loads(msg.data)
    except ValueError:
        return None
    return data if isinstance(data, dict) and data.get("type") == "setup" else None


async def _end(ws: web.WebSocketResponse, reason: str, detail: str | None = None) -> None:
    """Hand the call back to Twilio (its next TwiML verb gets `handoffData`)."""
    await send_quietly(ws, {"type": "end", "handoffData": json.dumps({"reason": reason, "detail": detail})})
    await ws.close()


async def _serve(app: web.Application, chat: ChatService, ws: web.WebSocketResponse, agent: dict[str, Any]) -> None:
    store = app[STORE]
    setup = await _first_message(ws)
    if setup is None:
        await ws.close(code=CLOSE_BAD_SETUP, message=b"the first message must be a setup message")
        return
    try:
        refuse_unavailable_agent(agent)
        row = await relay_service.open_call(store, agent, setup)
    except (Conflict, LimitError) as e:
        log.warning("ConversationRelay call %s refused: %s", setup.get("callSid"), e)
        await _end(ws, "concurrency_limit" if isinstance(e, LimitError) else "agent_unavailable", str(e))
        return
    sid = row["id"]
    context = json.loads(row["context"]) if row["context"] else None
    log.info("ConversationRelay call %s: session %s for agent %s", setup.get("callSid"), sid, agent["id"])
    call = _RelayCall(chat, ws, agent, sid, context)
    chat.live_relays.add(sid)
    try:
        await call.greet()
        await call.run()
    finally:
        # owned and shielded: a handler cancelled as the socket drops still ends the call and has it analysed
        chat.live_relays.discard(sid)
        await asyncio.shield(chat.spawn(call.finish(), f"relay-end:{sid}"))


class _RelayCall:
    def __init__(
        self,
        chat: ChatService,
        ws: web.WebSocketResponse,
        agent: dict[str, Any],
        session_id: str,
        context: dict[str, Any] | None,
    ) -> None:
        self.chat, self.ws, self.agent, self.session_id, self.context = chat, ws, agent, session_id, context
        self.speaking: Turn | None = None  # the turn whose reply Twilio is saying
        self.partial = ""  # the caller's words so far, from partial prompts
        self.failed: str | None = None
        self.pending: set[asyncio.Task[Any]] = set()  # this call's turns (owned by the chat service as well)

    async def greet(self) -> None:
        values = call_values(self.context, agent=self.agent, session_id=self.session_id)
        first = fill(self.agent.get("first_message"), values)
        if self.agent.get("first_message_mode") == "assistant_speaks_first" and first:
            await self.chat.store.write(
                lambda db: sessions_repo.append_item(
                    db,
                    session_id=self.session_id,
                    item_key="greeting",
                    speaker="AGENT",
                    content=first,
                    timestamp=now_iso(),
                )
            )
            await send_quietly(self.ws, {"type": "text", "token": first, "last": True})

    async def run(self) -> None:
        async for msg in self.ws:
            if msg.type != WSMsgType.TEXT:
                continue
            try:
                data = loads(msg.data)
            except ValueError:
                log.warning(
                    "session %s: a relay message that is not JSON (or nests too deep): skipped", self.session_id
                )
                continue
            kind = data.get("type") if isinstance(data, dict) else None
            if kind == "prompt":
                self._prompt(data)
            elif kind == "interrupt":
                self._interrupt(data)
            elif kind == "dtmf" and isinstance(data.get("digit"), str) and data["digit"]:
                self._reply(Turn(session_id=self.session_id, content=data["digit"], source="dtmf"))
            elif kind == "error":
                log.warning("session %s: ConversationRelay reports: %s", self.session_id, data.get("description"))
            elif kind != "setup":
                log.warning("session %s: unknown relay message type %r", self.session_id, kind)
            if self.failed is not None:
                return

    def _prompt(self, data: dict[str, Any]) -> None:
        words = data.get("voicePrompt")
        if not isinstance(words, str):
            return
        # partial prompts may repeat what came before (cumulative) or carry only the new words
        self.partial = words if words.startswith(self.partial) else self.partial + words
        if data.get("last") is False:  # a partial prompt: the caller is still speaking
            return
        text, self.partial = self.partial.strip(), ""
        if text:
            self._reply(Turn(session_id=self.session_id, content=text))

    def _interrupt(self, data: dict[str, Any]) -> None:
        turn = self.speaking
        if turn is not None and turn.heard is None:
            heard = data.get("utteranceUntilInterrupt")
            # the rest of the reply is not said; the LLM finishes anyway (its usage is billed exactly) unheard
            turn.heard = heard if isinstance(heard, str) else ""

    def _reply(self, turn: Turn) -> None:
        task = self.chat.spawn(self._answer(turn), f"relay-turn:{self.session_id}")
        self.pending.add(task)
        task.add_done_callback(self.pending.discard)

    async def _answer(self, turn: Turn) -> None:
        async def token(text: str) -> None:
            self.speaking = turn
            if turn.heard is None:
                await send_quietly(self.ws, {"type": "text", "token": text, "last": False})

        try:
            await self.chat.run_turn(self.agent, turn, token, self.context)
        except LlmFailed as e:
            await self._fail(str(e))
            return
        if turn.heard is None:
            await send_quietly(self.ws, {"type": "text", "token": "", "last": True})

    async def _fail(self, reason: str) -> None:
        """The LLM failed for good: the caller hears the agent's error message, then the call is handed back."""
        if self.failed is not None:
            return
        self.failed = reason
        apology = agent_spec(self.agent).error_message or DEFAULT_ERROR_MESSAGE
        await self.chat.store.write(
            lambda db: sessions_repo.append_item(
                db,
                session_id=self.session_id,
                item_key="error-message",
                speaker="AGENT",
                content=apology,
                timestamp=now_iso(),
            )
        )
        await send_quietly(self.ws, {"type": "text", "token": apology, "last": True})
        await _end(self.ws, "error", reason)

    async def finish(self) -> None:
        """The socket is gone (Twilio hung up, or we handed the call back): the session ends after the turn in
        flight, and is analysed."""
        if self.pending:
            await asyncio.wait(list(self.pending))
        if self.failed is not None:
            await self.chat.close(self.session_id, reason="error", error=self.failed)
        else:
            await self.chat.close(self.session_id, reason="completed")


ROUTES = [
    Route(
        "POST",
        "/api/relay/urls",
        create_relay_url,
        "A one-time ConversationRelay URL for one call of an agent",
        "relay",
        response=RelayUrl,
        body=RelayUrlRequest,
        status=201,
        errors=(404, 409),
    ),
    Route(
        "GET",
        "/relay/ws",
        relay_socket,
        "Twilio ConversationRelay websocket (a one-time URL signed by Twilio)",
        "relay",
        raw=True,
        public=True,
        status=101,
        errors=(400, 401, 403),
    ),
    Route(
        "PUT",
        "/api/settings/twilio",
        put_twilio_settings,
        "Set the tenant's Twilio auth token (write-only)",
        "settings",
        response=TwilioSettings,
        body=TwilioSettingsBody,
    ),
    Route(
        "GET",
        "/api/settings/twilio",
        get_twilio_settings,
        "Whether a Twilio auth token is set (masked)",
        "settings",
        response=TwilioSettings,
    ),
]
