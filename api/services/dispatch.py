"""The dispatch watchdog: no call waits for an agent forever, and none ends looking like a normal call.

A token dispatches the agent into the caller's room and leaves the session `pending` until the job starts it. If the
caller is in the room (a `participant_joined` webhook, or LiveKit's participant list when webhooks are not set up)
and no job has started within `dispatch_timeout_seconds`, the dispatch is deleted and made once more; after a second
wait the session ends as `no_agent_available` with the reason, the caller's room is closed, and the analysis is
skipped. An outbound phone call has nobody in its room before its job dials: it waits from its dispatch, and one no
job took ends the same way (its phone call FAILED, before any number was dialled). A job of the first dispatch that
starts late finds the call served or ended and leaves (worker/entrypoint.py), so a number is never dialled twice.
The watchdog is one task owned by the app (started and cancelled with it)."""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta
from typing import Any

from core.cluster import Lease
from core.dispatch_meta import DispatchMeta
from core.livekit import Gateways, LiveKitGateway
from core.periodic import Periodic
from core.store import dispatch as repo
from core.store.db import Store
from core.store.timefmt import parse_iso, to_iso

log = logging.getLogger("voxarena.dispatch")

MAX_DISPATCHES = 2  # the first, and one retry
# A token unused for this long is not watched (its caller never came); the sweeper closes it eventually.
WATCH_WINDOW = timedelta(hours=1)


def dispatch_metadata(row: dict[str, Any]) -> DispatchMeta:
    """What a job needs to find its call: the same for the first dispatch and a retry."""
    return DispatchMeta(
        agent_id=row["agent_id"],
        session_id=row["id"],
        owner_id=row["owner_id"],
        direction=row["direction"],
        phone_number=row.get("outbound_phone_number") or None,
        call_id=row.get("call_id") or None,  # an outbound phone call: the job dials it
    )


class DispatchWatchdog:
    def __init__(
        self,
        store: Store,
        gateways: Gateways,
        *,
        timeout_seconds: float,
        interval_seconds: float = 1.0,
        lease: Lease | None = None,
    ) -> None:
        self.store = store
        self.gateways = gateways  # a call of a client's agent is watched on the client's LiveKit server
        self.timeout = timedelta(seconds=timeout_seconds)
        # one node of a cluster watches at a time (the lease), so a waiting call is redispatched once
        self._periodic = Periodic("dispatch-watchdog", interval_seconds, self.check_once, log, lease=lease)

    def start(self) -> None:
        self._periodic.start()

    async def stop(self) -> None:
        await self._periodic.stop()

    async def check_once(self, now: datetime | None = None) -> dict[str, int]:
        """One pass over the waiting calls; returns what it did (for tests and logs)."""
        now = now or datetime.now(UTC)
        done = {"retried": 0, "given_up": 0}
        rows = await self.store.read(repo.waiting, to_iso(now - WATCH_WINDOW))
        for row in rows:
            joined = row["caller_joined_at"]
            gateway = await self.gateways.for_session(row)
            if row.get("call_id"):  # outbound: the job dials, nobody is in the room before it: waiting since dispatch
                joined = row["dispatched_at"] or row["created_at"]
            elif joined is None:
                if not row["room_name"] or not await gateway.caller_present(row["room_name"]):
                    continue  # nobody is waiting yet
                joined = to_iso(now)
                if not await self.store.write(
                    lambda db, room=row["room_name"], at=joined: repo.caller_joined(db, room, at=at)
                ):
                    continue  # another pass (another node's) recorded the join first: the next pass reads its time
            since = max(parse_iso(joined), parse_iso(row["dispatched_at"] or joined))
            if now - since < self.timeout:
                continue
            if row["dispatch_attempts"] < MAX_DISPATCHES:
                await self._retry(gateway, row, now)
                done["retried"] += 1
            elif await self._give_up(gateway, row, now):
                done["given_up"] += 1
        return done

    async def _retry(self, gateway: LiveKitGateway, row: dict[str, Any], now: datetime) -> None:
        waited = self.timeout.total_seconds()
        log.warning(
            "session %s: no agent picked up the call in room %s within %.0fs; dispatching again",
            row["id"],
            row["room_name"],
            waited,
        )
        try:
            await gateway.delete_dispatch(row["dispatch_id"], row["room_name"])
        except Exception as e:  # the old dispatch may be gone with its room; the new one matters
            log.warning("session %s: could not delete dispatch %s: %s", row["id"], row["dispatch_id"], e)
        new_id = await gateway.dispatch(room=row["room_name"], metadata=dispatch_metadata(row))
        await self.store.write(lambda db: repo.record_dispatch(db, row["id"], new_id, at=to_iso(now)))

    async def _give_up(self, gateway: LiveKitGateway, row: dict[str, Any], now: datetime) -> bool:
        error = (
            f"no agent worker took the call: dispatched {row['dispatch_attempts']} times, waited "
            f"{self.timeout.total_seconds():.0f}s after each "
            + ("before dialling (the number was not dialled)" if row.get("call_id") else "with the caller in the room")
        )
        if not await self.store.write(lambda db: repo.give_up(db, row["id"], error=error, ended_at=to_iso(now))):
            return False  # its job started meanwhile
        log.error("session %s ends: no_agent_available (%s); closing room %s", row["id"], error, row["room_name"])
        for what, action in (
            ("dispatch", gateway.delete_dispatch(row["dispatch_id"], row["room_name"])),
            ("room", gateway.delete_room(row["room_name"])),
        ):
            try:
                await action
            except Exception as e:
                log.warning("session %s: could not delete the %s: %s", row["id"], what, e)
        return True
