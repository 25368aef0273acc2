"""The agent's own webhooks, both signed like every request the product sends a tenant (core/signing.py) and sent
through the outbound address policy (core/netpolicy.py), never following a redirect:

- the **pre-call context webhook** (``contextWebhookUrl``): before a call starts, the product POSTs what it knows
  of the call and merges the JSON object the answer holds into the call's context, within a deadline; a call never
  waits longer than that for it (`precall_context`);
- the **post-call webhook** (``webhookUrl``): once a call's analysis is done or skipped, the session, transcript,
  tool calls, analysis and cost, from an outbox (core/store/agent_webhooks.py; the API process delivers it)."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import aiohttp

from core.netpolicy import AddressRefused, NetPolicy
from core.signing import SIGNATURE_HEADER, sign
from core.store.timefmt import to_iso

MAX_ANSWER_BYTES = 64 * 1024  # of the pre-call webhook's answer


class WebhookFailed(Exception):
    """The webhook did not give a usable answer; the message says why, for the session's record."""


@dataclass(frozen=True)
class Delivery:
    """One signed POST to a tenant's receiver: its status (None when no answer came), why it failed (None when it
    was delivered: a 2xx answer) and the signature it carried."""

    status: int | None
    error: str | None
    signature: str

    @property
    def delivered(self) -> bool:
        return self.error is None


def failure_reason(e: BaseException, timeout: float) -> str:
    """What a failed attempt records: the policy's refusal in its own words, else the client's error."""
    refused = e if isinstance(e, AddressRefused) else getattr(e, "os_error", None)
    if isinstance(refused, AddressRefused):
        return f"refused: {refused}"
    if isinstance(e, TimeoutError):
        return f"no answer within {timeout:g} s"
    return str(e) or type(e).__name__


async def deliver_signed(
    http: aiohttp.ClientSession,
    policy: NetPolicy,
    url: str,
    body: bytes,
    *,
    secret: str,
    timeout: float,
    headers: dict[str, str] | None = None,
) -> Delivery:
    """An outbox's delivery attempt (callbacks, post-call webhooks): POSTed signed, never raising."""
    try:
        status, _, signature = await post_signed(
            http, policy, url, body, secret=secret, timeout=timeout, headers=headers, max_answer=1024
        )
    except (TimeoutError, aiohttp.ClientError, OSError) as e:
        return Delivery(None, failure_reason(e, timeout), sign(secret, body, int(time.time())))
    return Delivery(status, None if 200 <= status < 300 else f"HTTP {status}", signature)


def retry_at(attempt: int, max_attempts: int, backoff_seconds: float) -> str | None:
    """When a failed attempt is tried again: after `backoff_seconds`, doubling per attempt; None: given up."""
    if attempt >= max_attempts:
        return None
    return to_iso(datetime.now(UTC) + timedelta(seconds=backoff_seconds * (2 ** (attempt - 1))))


async def post_signed(
    http: aiohttp.ClientSession,
    policy: NetPolicy,
    url: str,
    body: bytes,
    *,
    secret: str,
    timeout: float,
    headers: dict[str, str] | None = None,
    max_answer: int = MAX_ANSWER_BYTES,
) -> tuple[int, bytes, str]:
    """POSTs `body` signed; returns the status, the answer (capped at `max_answer`) and the signature sent."""
    signature = sign(secret, body, int(time.time()))
    await policy.check_url(url, resolve=False)  # a literal address; a name is checked as it resolves
    async with http.post(
        url,
        data=body,
        timeout=aiohttp.ClientTimeout(total=timeout),
        allow_redirects=False,
        headers={"Content-Type": "application/json", SIGNATURE_HEADER: signature, **(headers or {})},
    ) as resp:
        return resp.status, await resp.content.read(max_answer), signature


async def precall_context(
    http: aiohttp.ClientSession,
    policy: NetPolicy,
    url: str,
    payload: dict[str, Any],
    *,
    secret: str,
    timeout: float,
) -> dict[str, Any]:
    """The JSON object the pre-call webhook answers with; `WebhookFailed` saying why when there is none."""
    body = json.dumps(payload, ensure_ascii=False).encode()
    try:
        status, answer, _ = await post_signed(http, policy, url, body, secret=secret, timeout=timeout)
    except TimeoutError:
        raise WebhookFailed(f"the context webhook did not answer within {timeout:g} s") from None
    except (aiohttp.ClientError, OSError) as e:
        raise WebhookFailed(f"the context webhook could not be reached ({e or type(e).__name__})") from None
    if not 200 <= status < 300:
        raise WebhookFailed(f"the context webhook answered HTTP {status}")
    try:
        data = json.loads(answer) if answer.strip() else {}
    except ValueError:
        raise WebhookFailed("the context webhook's answer is not JSON") from None
    if not isinstance(data, dict):
        raise WebhookFailed("the context webhook's answer is not a JSON object")
    return data
