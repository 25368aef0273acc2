"""The campaigns' dialer, in the API process (no extra service): every two seconds, on one node of a cluster at a time
(a lease), for each running campaign in turn:

1. the attempts whose phone call ended get their outcome and their contact its next state (a retry when the
   campaign's policy covers the outcome), and attempts claimed by a dialer that stopped before dialling are given
   back (core/store/campaigns.py);
2. the circuit breaker pauses the campaign, saying why, when more than ``failure_ratio`` of its last calls within
   ``window_seconds`` failed (at least ``min_calls`` of them);
3. a campaign with no contact left to call is completed (``campaign.completed`` on the live stream);
4. inside the campaign's schedule (its days and hours in its timezone), up to ``max_concurrent_calls`` minus the
   calls in flight are claimed and dialled on the outbound path of ``POST /api/calls/outbound``, paced
   ``PACE_SECONDS`` apart, each carrying its contact's variables into the call's context and the campaign's name
   into the ledger; the tenant's concurrent call limit and the workers' capacity hold the rest back.

Its clock is injectable (`now`), so tests move a schedule window without waiting for it."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from core.cluster import Lease
from core.livekit import LiveKitGateway
from core.periodic import Periodic
from core.settings import Settings
from core.store import campaigns as repo
from core.store.db import Store
from core.store.errors import LimitError, NotFoundError
from core.store.timefmt import to_iso

from ..errors import ApiError
from . import outbound

log = logging.getLogger("voxarena.dialer")

INTERVAL_SECONDS = 2.0
PACE_SECONDS = 0.2  # between two call starts of one campaign
# An attempt claimed this long ago whose call was never made (the dialer stopped in between) is given back.
ORPHAN_SECONDS = 60.0
DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")

Capacity = Callable[[], Awaitable[str | None]]


def in_schedule(schedule: dict[str, Any] | None, now: datetime) -> bool:
    """Whether `now` is inside the schedule (days and ``start``..``end`` in its timezone); no schedule: always."""
    if not schedule:
        return True
    local = now.astimezone(ZoneInfo(schedule["timezone"]))
    if DAYS[local.weekday()] not in schedule["days"]:
        return False
    hhmm = local.strftime("%H:%M")
    return bool(schedule["start"] <= hhmm < schedule["end"])


def breaker_tripped(breaker: dict[str, Any] | None, outcomes: list[str]) -> str | None:
    """Why the circuit breaker pauses the campaign, or None."""
    if not breaker or len(outcomes) < breaker["min_calls"]:
        return None
    failed = sum(1 for o in outcomes if o == "failed")
    if failed / len(outcomes) > breaker["failure_ratio"]:
        return (
            f"circuit breaker: {failed} of the last {len(outcomes)} calls failed "
            f"(more than {breaker['failure_ratio']:.0%} within {breaker['window_seconds']} s)"
        )
    return None


class Dialer:
    def __init__(
        self,
        store: Store,
        gateway: LiveKitGateway,
        settings: Settings,
        *,
        capacity: Capacity | None = None,
        lease: Lease | None = None,
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
        interval_seconds: float = INTERVAL_SECONDS,
        pace_seconds: float = PACE_SECONDS,
    ) -> None:
        self.store = store
        self.gateway = gateway
        self.settings = settings
        self.capacity = capacity
        self.now = now
        self.pace = pace_seconds
        self._periodic = Periodic("campaign-dialer", interval_seconds, self.tick, log, lease=lease)

    def start(self) -> None:
        self._periodic.start()

    async def stop(self) -> None:
        await self._periodic.stop()

    async def tick(self) -> int:
        """One round over the running campaigns; returns the calls it started."""
        started = 0
        for campaign in await self.store.read(repo.to_dial):
            started += await self.run(campaign)
        return started

    async def run(self, campaign: dict[str, Any]) -> int:
        now = self.now()
        full = await self.capacity() if self.capacity is not None else None
        claimed = await self.store.write(self._step, campaign, now, full is None)
        if full is not None and campaign["status"] == "running":
            log.info("campaign %s waits: %s", campaign["id"], full)
        started = 0
        for i, contact in enumerate(claimed):
            if i:
                await asyncio.sleep(self.pace)
                # asked again before each call, as the token route does: a dispatch the worker refuses is dropped
                # by LiveKit, and the call would ring with nobody to dial it
                full = await self.capacity() if self.capacity is not None else None
                if full is not None:
                    log.info("campaign %s: %s; %d contacts wait", campaign["id"], full, len(claimed) - i)
                    await self.store.write(self._give_back, claimed[i:], to_iso(self.now()), full)
                    break
            started += await self._dial(campaign, contact)
        return started

    @staticmethod
    def _give_back(db: Any, contacts: list[dict[str, Any]], now_s: str, why: str) -> None:
        for contact in contacts:
            repo.not_placed(db, contact["call_id"], reason=why, now=now_s, give_back=True)

    def _step(self, db: Any, campaign: dict[str, Any], now: datetime, may_dial: bool) -> list[dict[str, Any]]:
        """Settle, judge, and claim what to dial, in one transaction."""
        cid, now_s = campaign["id"], to_iso(now)
        current = db.execute("SELECT status, updated_at FROM campaigns WHERE id = ?", [cid]).fetchone()
        if current is None:
            return []
        campaign = {**campaign, "status": current[0]}  # it may have been paused or cancelled since the round began
        backoff = float((campaign["retry"] or repo.DEFAULT_RETRY)["backoff_seconds"])
        settled = repo.settle(db, campaign, now_s, to_iso(now + timedelta(seconds=backoff)))
        if campaign["status"] != "running":  # a paused or cancelled campaign's calls end; nothing new starts
            if settled:
                self._emit(db, campaign, "campaign.progress")
            return []
        for call_id in repo.orphans(db, cid, to_iso(now - timedelta(seconds=ORPHAN_SECONDS))):
            log.warning("campaign %s: attempt %s was claimed but never dialled; given back", cid, call_id)
            repo.not_placed(db, call_id, reason="never dialled", now=now_s, give_back=True)
        breaker = campaign["circuit_breaker"]
        # the calls that ended within the window, and since the campaign was last (re)started: a resumed campaign
        # is judged on its new calls
        window = max(to_iso(now - timedelta(seconds=breaker["window_seconds"])), current[1]) if breaker else now_s
        tripped = breaker_tripped(breaker, repo.recent_outcomes(db, cid, window))
        claimed: list[dict[str, Any]] = []
        if tripped:
            log.warning("campaign %s paused: %s", cid, tripped)
            repo.set_status(db, cid, "paused", reason=tripped)
        elif repo.finished(db, cid):
            repo.set_status(db, cid, "completed")
            self._emit(db, campaign, "campaign.completed")
            log.info("campaign %s completed", cid)
            return []
        elif may_dial and in_schedule(campaign["schedule"], now):
            slots = campaign["max_concurrent_calls"] - repo.in_flight(db, cid)
            if slots > 0:
                claimed = repo.claim(db, campaign, slots, now_s)
        if settled or claimed or tripped:
            self._emit(db, campaign, "campaign.progress", status="paused" if tripped else None)
        return claimed

    def _emit(self, db: Any, campaign: dict[str, Any], kind: str, *, status: str | None = None) -> None:
        status = status or ("completed" if kind == "campaign.completed" else campaign["status"])
        repo.emit_progress(db, {**campaign, "status": status}, kind)

    async def _dial(self, campaign: dict[str, Any], contact: dict[str, Any]) -> int:
        call_id = contact["call_id"]
        now_s = to_iso(self.now())
        try:
            row = await outbound.place(
                self.store,
                self.gateway,
                self.settings,
                owner_id=campaign["owner_id"],
                agent_id=campaign["agent_id"],
                phone_number=contact["phone_number"],
                callback_url=campaign["callback_url"],
                context=contact["variables"],
                campaign=campaign["name"],
                call_id=call_id,
            )
        except LimitError as e:  # the tenant's concurrent calls: this contact waits for the next round
            log.info("campaign %s: %s; %s waits", campaign["id"], e, contact["phone_number"])
            waits = str(e)
            await self.store.write(lambda db: repo.not_placed(db, call_id, reason=waits, now=now_s, give_back=True))
            return 0
        except (ApiError, NotFoundError) as e:
            # a call whose dispatch failed is a FAILED phone call: the next round settles it like any other
            log.error("campaign %s: the call to %s could not start: %s", campaign["id"], contact["phone_number"], e)
            why = str(e)
            await self.store.write(lambda db: repo.not_placed(db, call_id, reason=why, now=now_s, give_back=False))
            return 0
        await self.store.write(repo.placed, call_id, row["session_id"])
        log.info("campaign %s: calling %s (attempt %d)", campaign["id"], contact["phone_number"], contact["attempt"])
        return 1
