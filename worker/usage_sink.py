"""The metering sink of a job: usage events go straight into the ledger through the job process's store."""

from __future__ import annotations

from api.store import usage as ledger
from api.store.db import Store
from pipelines.metering import UsageEvent


class StoreUsageSink:
    def __init__(self, store: Store) -> None:
        self.store = store

    async def record(self, events: list[UsageEvent]) -> None:
        await self.store.write(ledger.record_events, [e.as_dict() for e in events])
