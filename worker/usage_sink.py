"""The metering sink of a job: usage events go into the ledger through the job process's store.

A failed write is retried (bounded, with backoff). If the store stays unusable (closed with its process, the disk
gone), the events are spilled to a durable per-job file that the next `voxarena serve` ingests, idempotently by key;
the spill counts as the acknowledgement, so the meter moves on and nothing is lost or counted twice."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

from core.store import usage as ledger
from core.store.db import Store
from pipelines.metering import UsageEvent

from .usage_spill import spill

log = logging.getLogger("voxarena.metering")

ATTEMPTS = 4
FIRST_BACKOFF_SECONDS = 0.2  # then 0.4, 0.8: about 1.4 s of retries before the spill


class StoreUsageSink:
    def __init__(
        self,
        store: Store,
        *,
        spill_file: Path | None = None,
        attempts: int = ATTEMPTS,
        backoff_seconds: float = FIRST_BACKOFF_SECONDS,
    ) -> None:
        self.store = store
        self.spill_file = spill_file
        self.attempts = attempts
        self.backoff = backoff_seconds

    async def record(self, events: list[UsageEvent]) -> None:
        rows = [e.as_dict() for e in events]
        delay = self.backoff
        for attempt in range(1, self.attempts + 1):
            try:
                await self.store.write(ledger.record_events, rows)
                return
            except Exception as e:  # the same rows (same keys) again: a write that did land is not doubled
                error = e
                if attempt < self.attempts:
                    log.warning(
                        "usage write failed (attempt %d of %d): %s; retrying in %.1fs", attempt, self.attempts, e, delay
                    )
                    await asyncio.sleep(delay)
                    delay *= 2
        if self.spill_file is None:
            raise error
        await asyncio.to_thread(spill, self.spill_file, rows)
        log.error(
            "usage write failed %d times (%s): %d events spilled to %s for the next start",
            self.attempts,
            error,
            len(rows),
            self.spill_file,
        )
