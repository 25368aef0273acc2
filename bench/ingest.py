"""Metering ingest: usage events per second through the product's own metering path (pricing, the job's sink,
the store's group-committing writer, idempotent ledger insert and rollups) against plain `executemany` of the same
rows into SQLite, in the same run; and event-loop lateness while ingesting 2k events/s."""

from __future__ import annotations

import asyncio
import itertools
import sqlite3
import tempfile
import time
from decimal import Decimal
from pathlib import Path

from api.loopmon import LoopMonitor
from api.schemas.agents import storage
from core.store import agents as agents_repo
from core.store import sessions as sessions_repo
from core.store import usage as ledger
from core.store.db import Store
from core.store.tenants import personal_tenant_id
from pipelines.metering import make_event
from pipelines.pricing import PriceBook
from worker.usage_sink import StoreUsageSink

from .common import Results, pct

KINDS = [
    ("deepgram", "stt_minutes", Decimal("0.016666666667")),
    ("gemini", "llm_tokens", Decimal(137)),
    ("elevenlabs", "tts_characters", Decimal(42)),
]

BENCH = personal_tenant_id("bench")  # the personal tenant of the user the bench signs in as


def _setup(store: Store, sessions: int) -> list[tuple[str, str]]:
    agent = store.write_sync(
        agents_repo.create,
        BENCH,
        storage(
            {
                "name": "bench",
                "systemPrompt": "",
                "sttProvider": "deepgram",
                "llmProvider": "gemini",
                "ttsProvider": "elevenlabs",
            }
        ),
    )["id"]
    out = []
    for _ in range(sessions):
        sid = store.write_sync(lambda db: sessions_repo.create(db, owner_id=BENCH, agent_id=agent, status="active"))
        out.append((sid, agent))
    return out


def _events(book: PriceBook, calls: list[tuple[str, str]], n: int, tag: str):
    for i in range(n):
        sid, agent = calls[i % len(calls)]
        provider, kind, qty = KINDS[i % 3]
        yield make_event(
            book,
            key=f"{tag}/{sid}/{i}",
            owner_id=BENCH,
            session_id=sid,
            agent_id=agent,
            provider=provider,
            model=None,
            event_type=kind,
            quantity=qty,
            token_kind="input" if kind == "llm_tokens" else None,
        )


async def _product_path(
    store: Store, book: PriceBook, calls, n: int, batch: int, concurrency: int, *, tag: str = "p"
) -> float:
    """Events/s of `n` new events (keys tagged `tag`: a tag used before replays stored keys, which are skipped)."""
    sink = StoreUsageSink(store)
    it = iter(_events(book, calls, n, tag))
    t0 = time.perf_counter()

    async def meter() -> None:
        while True:
            chunk = list(itertools.islice(it, batch))
            if not chunk:
                return
            await sink.record(chunk)

    await asyncio.gather(*[meter() for _ in range(concurrency)])
    return n / (time.perf_counter() - t0)


def _plain_executemany(path: Path, rows: list[list]) -> float:
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute("PRAGMA synchronous = NORMAL")
    conn.execute(f"CREATE TABLE IF NOT EXISTS plain ({', '.join(ledger.COLUMNS)})")
    t0 = time.perf_counter()
    conn.execute("BEGIN")
    conn.executemany(f"INSERT INTO plain VALUES ({', '.join('?' * len(ledger.COLUMNS))})", rows)
    conn.execute("COMMIT")
    rate = len(rows) / (time.perf_counter() - t0)
    conn.close()
    return rate


async def _lateness_while_ingesting(store: Store, book: PriceBook, calls, rate: int, seconds: float) -> dict:
    sink = StoreUsageSink(store)
    monitor = LoopMonitor(interval=0.01)
    monitor.start()
    gen = _events(book, calls, int(rate * seconds), "late")
    tick = 0.05
    per_tick = int(rate * tick)
    loop = asyncio.get_running_loop()
    start = loop.time()
    pending = []
    for k in range(int(seconds / tick)):
        chunk = list(itertools.islice(gen, per_tick))
        # like 100 calls each flushing a few events per tick
        for i in range(0, len(chunk), 5):
            pending.append(asyncio.ensure_future(sink.record(chunk[i : i + 5])))
        await asyncio.sleep(max(0.0, start + (k + 1) * tick - loop.time()))
    await asyncio.gather(*pending)
    await monitor.stop()
    return monitor.snapshot()


async def run(results: Results, *, events: int = 200_000) -> None:
    book = PriceBook.load()
    with tempfile.TemporaryDirectory(prefix="vx-bench-ingest-") as d:
        store = Store(Path(d) / "ingest.db")
        calls = _setup(store, 200)
        # Side by side, alternating, best of three each: the machine is shared and noisy.
        product_rates, plain_rates = [], []
        for r in range(3):
            # new keys each round (the same keys again would measure the idempotent skip, not ingest)
            product_rates.append(await _product_path(store, book, calls, events, batch=50, concurrency=32, tag=f"p{r}"))
            rows = [ledger.row_values(e.as_dict(), "") for e in _events(book, calls, events, f"plain{r}")]
            plain_rates.append(_plain_executemany(Path(d) / f"plain{r}.db", rows))
        product, plain = max(product_rates), max(plain_rates)
        results.raw["ingest"] = {"product_rates": product_rates, "plain_rates": plain_rates}
        results.add("3 ingest", "product metering path", f"{product:,.0f} events/s", ">= 50,000/s", product >= 50_000)
        results.add("3 ingest", "plain executemany", f"{plain:,.0f} events/s")
        results.add("3 ingest", "ratio product / plain", f"{product / plain:.2f}x", ">= 0.5x", product / plain >= 0.5)
        lag = await _lateness_while_ingesting(store, book, calls, rate=2000, seconds=10)
        results.raw["ingest"]["lateness"] = lag
        results.add(
            "3 ingest",
            "loop lateness p99 at 2k events/s",
            f"{lag['lag_p99_ms']:.1f} ms",
            "<= 10 ms",
            lag["lag_p99_ms"] <= 10,
        )
        store.close()
    _ = pct
