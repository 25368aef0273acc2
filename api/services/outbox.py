"""What the product's two outbox senders share (outbound-call callbacks, api/services/callbacks.py; the agents'
post-call webhooks, api/services/post_call.py): every half second the due events are claimed (so that with several
nodes on one store each goes out from one of them), each is POSTed signed through an HTTP session of the outbound
address policy (the receiver's name resolved once per connection, only the checked addresses reached, no redirect
followed, a refused address a failed attempt that says why), and each attempt is recorded with the time of the next
one (exponential backoff) or the event given up."""

from __future__ import annotations

import asyncio
import logging
from abc import ABC, abstractmethod
from datetime import UTC, datetime, timedelta
from typing import Any

import aiohttp

from core.netpolicy import NetPolicy
from core.periodic import Periodic
from core.secrets import SecretBox
from core.store import calls as calls_repo
from core.store.db import Store
from core.store.timefmt import to_iso
from core.webhooks import Delivery, deliver_signed, retry_at

TIMEOUT_SECONDS = 10.0
# A claimed event waits this long past the attempt's timeout before another sender may try it.
CLAIM_MARGIN_SECONDS = 10.0


class OutboxSender(ABC):
    name = "outbox"
    log = logging.getLogger("voxarena.outbox")

    def __init__(
        self,
        store: Store,
        policy: NetPolicy,
        *,
        box: SecretBox,
        max_attempts: int,
        backoff_seconds: float,
        interval_seconds: float = 0.5,
    ) -> None:
        self.store = store
        self.box = box
        self.policy = policy
        self.max_attempts = max_attempts
        self.backoff = backoff_seconds
        self._http: aiohttp.ClientSession | None = None
        self._periodic = Periodic(self.name, interval_seconds, self.deliver_due, self.log)

    # ---- what each outbox says ----

    @abstractmethod
    def any_due(self, db: Any, now: str) -> bool:
        """Whether an event is due (a read: most rounds find none, and claim nothing)."""

    @abstractmethod
    def claim(self, db: Any, now: str, until: str) -> list[dict[str, Any]]:
        """The due events, claimed until `until` (on the store's writer)."""

    @abstractmethod
    async def target(self, event: dict[str, Any]) -> tuple[str, bytes]:
        """Where the event goes and its body."""

    @abstractmethod
    def describe(self, event: dict[str, Any]) -> str:
        """The event, for the log."""

    @abstractmethod
    def record(self, db: Any, event: dict[str, Any], attempt: int, sent: Delivery, retry_after: str | None) -> None:
        """The attempt, on the store's writer."""

    # ---- the sending ----

    def http(self) -> aiohttp.ClientSession:
        if self._http is None:  # made inside the running loop
            self._http = self.policy.session()
        return self._http

    def start(self) -> None:
        self._periodic.start()

    async def stop(self) -> None:
        await self._periodic.stop()
        if self._http is not None:
            await self._http.close()
            self._http = None

    async def deliver_due(self) -> int:
        now = datetime.now(UTC)
        if not await self.store.read(self.any_due, to_iso(now)):
            return 0
        until = to_iso(now + timedelta(seconds=TIMEOUT_SECONDS + CLAIM_MARGIN_SECONDS))
        events = await self.store.write(self.claim, to_iso(now), until)
        return sum(await asyncio.gather(*(self._deliver(e) for e in events)))

    async def _deliver(self, event: dict[str, Any]) -> bool:
        attempt = event["attempts"] + 1
        url, body = await self.target(event)
        secret = await self.store.write(calls_repo.callback_secret, self.box, event["owner_id"])
        sent = await deliver_signed(
            self.http(),
            self.policy,
            url,
            body,
            secret=secret,
            timeout=TIMEOUT_SECONDS,
            headers={"X-Voxarena-Event-Id": event["event_id"]},
        )
        retry_after = None if sent.delivered else retry_at(attempt, self.max_attempts, self.backoff)
        if not sent.delivered:
            self.log.warning(
                "%s attempt %d failed: %s%s",
                self.describe(event),
                attempt,
                sent.error,
                "; giving up" if retry_after is None else "",
            )
        await self.store.write(lambda db: self.record(db, event, attempt, sent, retry_after))
        return sent.delivered
