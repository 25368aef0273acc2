"""When the store is gone mid-call, the job's usage is spilled to a durable file and ingested exactly once by the
next start: exact quantities and money, nothing doubled by a second ingest or a torn line."""

from __future__ import annotations

from decimal import Decimal

from core.store import usage as ledger
from core.store.db import Store
from pipelines.metering import CallMeter
from pipelines.pricing import PriceBook
from tests.api.seed import seed_call, tenant_of
from tests.test_metering import sent, usage
from worker.usage_sink import StoreUsageSink
from worker.usage_spill import ingest_spilled, spill_path


async def test_usage_spilled_when_the_store_is_gone_is_ingested_once_by_the_next_start(tmp_path):
    db_path = tmp_path / "data" / "voxarena.db"
    store = Store(db_path)
    _, session_id = seed_call(store, "alice")
    spill_file = spill_path(tmp_path / "data", "AJ_job/1")
    sink = StoreUsageSink(store, spill_file=spill_file, attempts=2, backoff_seconds=0.01)
    m = CallMeter(
        PriceBook.load(),
        sink,
        owner_id=tenant_of("alice"),
        session_id=session_id,
        agent_id="a1",
        key_scope=f"{session_id}/AJ_job",
    )
    m.on_usage(usage(1000, 200, 3000))
    sent(m, 3000)
    await m.flush_usage()
    store.close()  # the job process's store is gone (its process is shutting down, the disk failed, ...)
    m.on_stt_audio(24_000, 16_000, provider="deepgram", model="nova-3")  # 1.5 s
    sent(m, 100)
    await m.close(usage(1500, 260, 3100))
    assert m.failed_writes == 0  # the spill acknowledged the last usage
    assert spill_file.exists() and spill_file.parent.name == "usage-spill"
    with spill_file.open("a") as f:
        f.write('{"id": "torn-by-a-cra')  # a crash mid-append

    spilled = spill_file.read_text()

    fresh = Store(db_path)  # the next start
    try:
        assert await ingest_spilled(fresh, spill_file.parent) == 4  # llm in/out, tts, stt
        assert not spill_file.exists()
        before = fresh.read_sync(ledger.session_breakdown, tenant_of("alice"), session_id)
        events = before["events"]

        def qty(event_type, kind=None):
            return sum(
                Decimal(str(e["quantity"])) for e in events if e["event_type"] == event_type and e["token_kind"] == kind
            )

        assert (qty("llm_tokens", "input"), qty("llm_tokens", "output"), qty("tts_characters")) == (1500, 260, 3100)
        assert qty("stt_minutes") == Decimal("0.025")
        # the same file again (as if a crash came between the commit and the delete): nothing new, same totals
        spill_file.write_text(spilled)
        assert await ingest_spilled(fresh, spill_file.parent) == 0
        assert fresh.read_sync(ledger.session_breakdown, tenant_of("alice"), session_id) == before
    finally:
        fresh.close()
