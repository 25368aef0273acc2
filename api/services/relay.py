"""Twilio ConversationRelay calls: Twilio does the speech (its STT and TTS), the agent's LLM answers in text.

Who is calling is proved by Twilio's request signature on the websocket handshake (`X-Twilio-Signature`: base64
HMAC-SHA1 of the URL Twilio opened, keyed with the account's auth token). The agent is named only later, in the
setup message's custom parameters (its id, or its slug); the signature is then checked against the auth token of
the agent's tenant, and a slug that several tenants use belongs to the one whose token signed the request. Nothing
is created and nothing sent before that check passes."""

from __future__ import annotations

import base64
import hashlib
import hmac
import logging
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from ..secrets import SecretBox
from ..store import chat as chat_repo
from ..store import sessions as sessions_repo
from ..store import twilio as twilio_repo
from ..store.db import Store

log = logging.getLogger("voxarena.relay")

AGENT_PARAMETERS = ("agent_id", "agentId", "agent_slug", "agentSlug", "agent")
TENANT_PARAMETERS = ("tenant_id", "tenantId", "tenant")


class RelayRefused(Exception):
    """The setup cannot go on: not signed by the agent's tenant, or no such agent (indistinguishable)."""


def signature(auth_token: str, url: str, params: dict[str, str] | None = None) -> str:
    """Twilio's request signature: the URL, then each POST parameter's name and value in name order."""
    data = url + "".join(k + v for k, v in sorted((params or {}).items()))
    return base64.b64encode(hmac.new(auth_token.encode(), data.encode(), hashlib.sha1).digest()).decode()


def _without_default_port(url: str) -> str:
    parts = urlsplit(url)
    if (parts.scheme, parts.port) in (("wss", 443), ("https", 443), ("ws", 80), ("http", 80)):
        return urlunsplit(parts._replace(netloc=parts.hostname or ""))
    return url


def signed_urls(*, public_base: str, host: str, secure: bool, path_qs: str) -> list[str]:
    """The URLs Twilio may have signed: the public URL's (behind a proxy the one the API sees differs) and the
    one this request names, each as ws(s) and http(s), with and without a default port."""
    bases = [public_base.rstrip("/"), f"{'https' if secure else 'http'}://{host}"]
    urls: list[str] = []
    for base in bases:
        for scheme_from, scheme_to in (("https://", "wss://"), ("http://", "ws://")):
            if base.startswith(scheme_from):
                urls += [base + path_qs, scheme_to + base[len(scheme_from):] + path_qs]
    urls += [_without_default_port(u) for u in urls]
    return list(dict.fromkeys(urls))


def verified(auth_token: str, urls: list[str], sig: str) -> bool:
    return any(hmac.compare_digest(signature(auth_token, u), sig) for u in urls)


def named(params: dict[str, Any], names: tuple[str, ...]) -> str | None:
    for name in names:
        value = params.get(name)
        if isinstance(value, str) and value.strip():
            return value.strip()
    return None


async def authenticate(store: Store, box: SecretBox, params: dict[str, Any], *, urls: list[str],
                       sig: str) -> dict[str, Any]:
    """The agent the setup names, of the tenant whose Twilio auth token signed the handshake."""
    key = named(params, AGENT_PARAMETERS)
    if key is None:
        raise RelayRefused("the setup message names no agent (custom parameter agent_id or agent_slug)")
    candidates = await store.read(chat_repo.relay_agents, key, named(params, TENANT_PARAMETERS))
    sealed = await store.read(twilio_repo.sealed_tokens, sorted({a["owner_id"] for a in candidates}))
    signed_by = []
    for agent in candidates:
        token = sealed.get(agent["owner_id"])
        if token is None:
            continue
        try:
            plain = box.open(token)
        except ValueError as e:  # sealed under another VOXARENA_SECRET_KEY: this tenant cannot be verified
            log.error("tenant %s: the Twilio auth token cannot be read: %s", agent["owner_id"], e)
            continue
        if verified(plain, urls, sig):
            signed_by.append(agent)
    if len(signed_by) != 1:
        # No agent, no token for its tenant, a wrong signature (or, absurdly, two tenants with one Twilio token).
        log.warning("ConversationRelay refused for agent %r: the signature matches %d of %d candidates", key,
                    len(signed_by), len(candidates))
        raise RelayRefused("the request signature does not match the agent's tenant")
    return signed_by[0]


async def open_call(store: Store, agent: dict[str, Any], setup: dict[str, Any]) -> dict[str, Any]:
    """The call's session (`channel: "relay"`), within the tenant's concurrent call limit (LimitError)."""
    outbound = str(setup.get("direction") or "inbound").startswith("outbound")
    caller = setup.get("to") if outbound else setup.get("from")
    params = dict(setup.get("customParameters") or {})
    context = {k: v for k, v in params.items() if k not in AGENT_PARAMETERS + TENANT_PARAMETERS} or None

    def open_(db: Any) -> dict[str, Any]:
        sessions_repo.reserve_call_slot(db, agent["owner_id"])
        sid = sessions_repo.create(
            db, owner_id=agent["owner_id"], agent_id=agent["id"], status="active", channel="relay",
            direction="outbound" if outbound else "inbound", client_id=agent["client_id"],
            phone_number=setup.get("to") if outbound else None,
            user_id=caller if isinstance(caller, str) else None,
            conversation_id=setup.get("callSid") if isinstance(setup.get("callSid"), str) else None,
            context=context)
        return sessions_repo.get_row(db, sid)

    return await store.write(open_)
