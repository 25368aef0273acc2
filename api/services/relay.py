"""Twilio ConversationRelay calls: Twilio does the speech (its STT and TTS), the agent's LLM answers in text.

Each call opens a URL the tenant asked for just before (``POST /api/relay/urls``, typically from the webhook that
answers Twilio with TwiML): ``wss://PUBLIC/relay/ws?ticket=...``. The ticket names the tenant and the agent, and is
good for one handshake. That handshake must carry Twilio's signature of exactly that URL (``X-Twilio-Signature``:
base64 HMAC-SHA1 keyed with the tenant's auth token), computed over the URL as ``VOXARENA_PUBLIC_URL`` gives it,
never as the request's ``Host`` header names it. All of it is checked before the websocket upgrade: a refused
handshake is a 403 and holds nothing; an admitted one uses the ticket up in the store, atomically, so a captured
signature replayed (here or on another API node) is refused."""

from __future__ import annotations

import base64
import hashlib
import hmac
import logging
import secrets
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from core.secrets import SecretBox
from core.store import agents as agents_repo
from core.store import sessions as sessions_repo
from core.store import tenants as tenants_repo
from core.store import twilio as twilio_repo
from core.store.db import Store
from core.store.errors import NotFoundError
from core.store.timefmt import now_iso, to_iso

log = logging.getLogger("voxarena.relay")

PATH = "/relay/ws"
# Custom parameters older TwiML still sends to name the agent; the ticket names it now, so they are not context.
AGENT_PARAMETERS = ("agent_id", "agentId", "agent_slug", "agentSlug", "agent")
TENANT_PARAMETERS = ("tenant_id", "tenantId", "tenant")
PRUNE_AFTER = timedelta(days=1)


class RelayRefused(Exception):
    """The handshake cannot go on (403, before the upgrade)."""


class TenantSuspended(RelayRefused):
    pass


def signature(auth_token: str, url: str, params: dict[str, str] | None = None) -> str:
    """Twilio's request signature: the URL, then each POST parameter's name and value in name order."""
    data = url + "".join(k + v for k, v in sorted((params or {}).items()))
    return base64.b64encode(hmac.new(auth_token.encode(), data.encode(), hashlib.sha1).digest()).decode()


def _without_default_port(url: str) -> str:
    parts = urlsplit(url)
    if (parts.scheme, parts.port) in (("wss", 443), ("https", 443), ("ws", 80), ("http", 80)):
        return urlunsplit(parts._replace(netloc=parts.hostname or ""))
    return url


def _ws_base(public_base: str) -> str:
    base = public_base.rstrip("/")
    for scheme_from, scheme_to in (("https://", "wss://"), ("http://", "ws://")):
        if base.startswith(scheme_from):
            return scheme_to + base[len(scheme_from) :]
    return base


def signed_urls(*, public_base: str, path_qs: str) -> list[str]:
    """The URLs Twilio may have signed for this request: the public URL's, as ws(s) and http(s), with and without
    a default port. The request's own Host is never used: whoever sends the request chooses it."""
    base = public_base.rstrip("/")
    urls = [_ws_base(base) + path_qs, base + path_qs]
    urls += [_without_default_port(u) for u in urls]
    return list(dict.fromkeys(urls))


def verified(auth_token: str, urls: list[str], sig: str) -> bool:
    return any(hmac.compare_digest(signature(auth_token, u), sig) for u in urls)


async def new_url(
    store: Store, owner_id: str, agent_id: str, *, public_base: str, ttl_seconds: float
) -> dict[str, Any]:
    """A relay URL good for one call of this agent within ``ttl_seconds``."""
    ticket = secrets.token_urlsafe(24)
    now = datetime.now(UTC)
    expires = to_iso(now + timedelta(seconds=ttl_seconds))
    await store.write(
        lambda db: twilio_repo.add_ticket(
            db, ticket, owner_id, agent_id, now=to_iso(now), expires_at=expires, prune_before=to_iso(now - PRUNE_AFTER)
        )
    )
    return {"url": f"{_ws_base(public_base)}{PATH}?ticket={ticket}", "agent_id": agent_id, "expires_at": expires}


async def admit(store: Store, box: SecretBox, *, ticket: str, urls: list[str], sig: str) -> dict[str, Any]:
    """The agent a signed handshake may talk to, its ticket used up; RelayRefused otherwise."""
    row = await store.read(twilio_repo.open_ticket, ticket, now_iso()) if ticket else None
    if row is None:
        log.warning("ConversationRelay refused: the URL's ticket is unknown, used or expired")
        raise RelayRefused("this relay URL is unknown, used or expired, or not signed for this tenant")
    owner_id = row["owner_id"]
    settings = await store.read(twilio_repo.get, owner_id)
    token = None
    if settings is not None:
        try:
            token = box.open(settings["auth_token"])
        except ValueError as e:  # sealed under another VOXARENA_SECRET_KEY: this tenant cannot be verified
            log.error("tenant %s: the Twilio auth token cannot be read: %s", owner_id, e)
    if token is None or not verified(token, urls, sig):
        log.warning("ConversationRelay refused for tenant %s: the signature does not match", owner_id)
        raise RelayRefused("this relay URL is unknown, used or expired, or not signed for this tenant")
    tenant = await store.read(tenants_repo.find, owner_id)
    if tenant is not None and tenant["status"] == "suspended":
        log.warning("ConversationRelay refused: tenant %s is suspended", owner_id)
        raise TenantSuspended(f"tenant {owner_id} is suspended")
    try:
        agent = await store.read(agents_repo.get_row, owner_id, row["agent_id"])
    except NotFoundError:
        raise RelayRefused(f"agent {row['agent_id']} not found") from None
    if not await store.write(twilio_repo.consume_ticket, ticket, now_iso()):
        log.warning("ConversationRelay refused for tenant %s: the URL was used already (a replay?)", owner_id)
        raise RelayRefused("this relay URL is unknown, used or expired, or not signed for this tenant")
    return agent


async def open_call(store: Store, agent: dict[str, Any], setup: dict[str, Any]) -> dict[str, Any]:
    """The call's session (`channel: "relay"`), within the tenant's concurrent call limit (LimitError)."""
    outbound = str(setup.get("direction") or "inbound").startswith("outbound")
    caller = setup.get("to") if outbound else setup.get("from")
    params = dict(setup.get("customParameters") or {})
    context = {k: v for k, v in params.items() if k not in AGENT_PARAMETERS + TENANT_PARAMETERS} or None

    def open_(db: Any) -> dict[str, Any]:
        sessions_repo.reserve_call_slot(db, agent["owner_id"])
        sid = sessions_repo.create(
            db,
            owner_id=agent["owner_id"],
            agent_id=agent["id"],
            status="active",
            channel="relay",
            direction="outbound" if outbound else "inbound",
            client_id=agent["client_id"],
            phone_number=setup.get("to") if outbound else None,
            user_id=caller if isinstance(caller, str) else None,
            conversation_id=setup.get("callSid") if isinstance(setup.get("callSid"), str) else None,
            context=context,
        )
        return sessions_repo.get_row(db, sid)

    return await store.write(open_)
