"""PostgreSQL beside SQLite, in one run (`python -m bench --only pg [--quick]`):

- API throughput: `GET /api/agents` and `GET /api/costs/summary` requests/s of two `voxarena serve --no-worker`
  processes, one on each store with the same data, wrk in alternating rounds;
- ingest: usage events/s through the ledger's own write (`record_events`: idempotent insert and rollups, batches
  of 500) on each store, alternating, best of three;
- cost queries: p50/p95 of the four cost endpoints on each store with the same ledger size (1M; `--quick` 100k),
  then PostgreSQL alone at 10M events (target p95 <= 20 ms), totals checked exactly against full scans.

The PostgreSQL server is the test harness's (`tests/harness/postgres.py`: fsync and synchronous_commit off, a
server made for the run, durability is not what is measured). SQLite's ledger is filled through the product's
path (`cost_queries._fill`); PostgreSQL's events beyond its agents and sessions are generated in SQL
(`generate_series`), the rollups and per-session totals rebuilt from them, so that the three agree by construction
and the full-scan check holds."""

from __future__ import annotations

import os
import random
import subprocess
import sys
import tempfile
import time
from decimal import Decimal
from pathlib import Path

from api.auth import LocalIssuer
from core.settings import Settings
from core.store import usage as ledger
from core.store.db import Store
from core.store.pg import PgDatabase
from pipelines.metering import make_event
from pipelines.pricing import PriceBook

from . import api_throughput, cost_queries
from .common import Results, median

KINDS = (
    ("deepgram", "stt_minutes", "minute"),
    ("assemblyai", "stt_minutes", "minute"),
    ("gemini", "llm_tokens", "token"),
    ("elevenlabs", "tts_characters", "character"),
    ("resemble", "tts_characters", "character"),
)


def _size(n: int) -> str:
    return f"{n // 1_000_000}M" if n % 1_000_000 == 0 else f"{n // 1000:,}k"


def _api(results: Results, data: Path, url: str, *, seconds: int, rounds: int, connections: int = 32) -> None:
    sqlite_dir, pg_dir = data / "sqlite", data / "pg"
    pg_dir.mkdir(parents=True)
    api_throughput.seed_store(sqlite_dir / "voxarena.db")
    api_throughput.seed_store(url)
    token = LocalIssuer(sqlite_dir).issue("bench", ttl_seconds=3600)
    ports = {"sqlite": api_throughput._port(), "postgresql": api_throughput._port()}
    procs = []
    for name, port in ports.items():
        env = {
            **{k: v for k, v in os.environ.items() if not k.startswith("VOXARENA_")},
            "VOXARENA_DATA_DIR": str(sqlite_dir),  # one issuer key for both (the SQLite file is unused by the other)
            "VOXARENA_PORT": str(port),
            "VOXARENA_LOG_LEVEL": "WARNING",
            "VOXARENA_RATE_LIMIT_RPS": "1000000000",
            "VOXARENA_WORKER_ENABLED": "false",
        }
        if name == "postgresql":
            env["VOXARENA_DATABASE_URL"] = url
        procs.append(
            subprocess.Popen(
                [str(Path(sys.executable).with_name("voxarena")), "serve", "--no-worker"],
                env=env,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
        )
    try:
        for port in ports.values():
            api_throughput._wait(f"http://127.0.0.1:{port}/health")
        auth = {"Authorization": f"Bearer {token}"}
        paths = {"agents": "/api/agents", "summary": "/api/costs/summary"}
        for port in ports.values():
            for path in paths.values():
                api_throughput._wrk(f"http://127.0.0.1:{port}{path}", auth, 2, connections)  # warm up
        rates: dict[tuple[str, str], list[float]] = {}
        for _ in range(rounds):
            for what, path in paths.items():
                for name, port in ports.items():
                    rate = api_throughput._wrk(f"http://127.0.0.1:{port}{path}", auth, seconds, connections)
                    rates.setdefault((what, name), []).append(rate)
        for what, path in paths.items():
            lite, pg = median(rates[(what, "sqlite")]), median(rates[(what, "postgresql")])
            results.add(
                "8 PostgreSQL",
                f"GET {path} req/s SQLite / PostgreSQL",
                f"{lite:,.0f} / {pg:,.0f} ({pg / lite:.2f}x)",
            )
        results.raw["pg_api"] = {f"{w}/{n}": v for (w, n), v in rates.items()}
    finally:
        for p in procs:
            p.terminate()
        for p in procs:
            p.wait(timeout=30)


def _ingest(results: Results, data: Path, url: str, *, events: int, rounds: int = 3) -> None:
    book = PriceBook.load()
    stores = {"sqlite": Store(data / "ingest.db"), "postgresql": Store(url)}
    best: dict[str, float] = {}
    try:
        for r in range(rounds):
            for name, store in stores.items():
                batch = [
                    make_event(
                        book,
                        key=f"{r}/{i}",
                        owner_id="ingest",
                        session_id=None,
                        agent_id=None,
                        provider="deepgram",
                        model=None,
                        event_type="stt_minutes",
                        quantity=Decimal("0.25"),
                    ).as_dict()
                    for i in range(events)
                ]
                t0 = time.perf_counter()
                futures = [store.submit(ledger.record_events, batch[i : i + 500]) for i in range(0, events, 500)]
                for f in futures:
                    assert all(f.result())
                rate = events / (time.perf_counter() - t0)
                best[name] = max(best.get(name, 0.0), rate)
        results.add(
            "8 PostgreSQL",
            "ledger ingest events/s SQLite / PostgreSQL (batches of 500, best of 3)",
            f"{best['sqlite']:,.0f} / {best['postgresql']:,.0f} ({best['postgresql'] / best['sqlite']:.2f}x)",
        )
    finally:
        for store in stores.values():
            store.close()


def _bulk_events(url: str, total: int, *, seed: int) -> None:
    """``total`` more usage events in SQL, spread over the sessions the product made (the first user's a third of
    them, as cost_queries does), then the rollups and per-session totals rebuilt from every event."""
    db = PgDatabase(url)
    try:
        db.execute(f"SELECT setseed({(seed % 1000) / 1000})")
        db.execute("DROP TABLE IF EXISTS bench_pick")
        db.execute(
            "CREATE TEMP TABLE bench_pick AS SELECT (row_number() OVER (ORDER BY (owner_id = ?) DESC, id)) - 1 AS n, "
            "owner_id, id AS session_id, agent_id FROM sessions",
            [cost_queries.personal_tenant_id("user0")],
        )
        (n_all,) = db.execute("SELECT COUNT(*) FROM bench_pick").fetchone() or (0,)
        (n_first,) = db.execute(
            "SELECT COUNT(*) FROM bench_pick WHERE owner_id = ?", [cost_queries.personal_tenant_id("user0")]
        ).fetchone() or (0,)
        db.execute("CREATE INDEX ON bench_pick (n)")
        kinds = " UNION ALL ".join(
            f"SELECT {i} AS k, '{p}' AS provider, '{e}' AS event_type, '{u}' AS unit"
            for i, (p, e, u) in enumerate(KINDS)
        )
        step = 500_000
        done = 0
        t0 = time.perf_counter()
        while done < total:
            n = min(step, total - done)
            db.execute(
                "INSERT INTO usage_events (id, owner_id, session_id, agent_id, provider, model, event_type, "
                "token_kind, quantity, unit, unit_cost, total_cost_nanos, priced, price_version, idempotency_key, "
                "request_hash, "
                "source, occurred_at, created_at) "
                "SELECT 'bench-' || r.g, p.owner_id, p.session_id, p.agent_id, k.provider, NULL, k.event_type, "
                "CASE WHEN k.event_type = 'llm_tokens' THEN 'output' END, (1 + floor(r.q * 2000))::text, k.unit, NULL, "
                "(1 + floor(r.c * 5000000))::bigint, 1, 'bench', 'bench/' || r.g, '', 'bench', "
                "to_char(now() AT TIME ZONE 'UTC' - r.age * interval '90 days', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"'), "
                "to_char(now() AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"') "
                "FROM (SELECT g, "
                "CASE WHEN random() < 0.33 THEN floor(random() * ?) ELSE floor(random() * ?) END AS pick, "
                "floor(random() * 5) AS kind, random() AS q, random() AS c, random() AS age "
                "FROM generate_series(?::bigint, ?::bigint) g) r "
                f"JOIN bench_pick p ON p.n = r.pick JOIN ({kinds}) k ON k.k = r.kind",
                [n_first, n_all, seed * 100_000_000 + done, seed * 100_000_000 + done + n - 1],
            )
            done += n
            print(f"  PostgreSQL ledger: +{done:,} events ({done / (time.perf_counter() - t0):,.0f}/s)", flush=True)
        db.execute("BEGIN")
        db.execute("DELETE FROM cost_rollups")
        db.execute(
            "INSERT INTO cost_rollups (owner_id, day, agent_id, provider, event_type, total_cost_nanos, event_count, "
            "unpriced_count) SELECT owner_id, substr(occurred_at, 1, 10), COALESCE(agent_id, ''), provider, "
            "event_type, "
            "SUM(COALESCE(total_cost_nanos, 0)), COUNT(*), SUM(CASE WHEN priced = 0 THEN 1 ELSE 0 END) "
            "FROM usage_events GROUP BY 1, 2, 3, 4, 5"
        )
        db.execute("DELETE FROM session_costs")
        db.execute(
            "INSERT INTO session_costs (session_id, owner_id, agent_id, total_cost_nanos, event_count, unpriced_count) "
            "SELECT session_id, MIN(owner_id), COALESCE(MIN(agent_id), ''), SUM(COALESCE(total_cost_nanos, 0)), "
            "COUNT(*), SUM(CASE WHEN priced = 0 THEN 1 ELSE 0 END) FROM usage_events WHERE session_id IS NOT NULL "
            "GROUP BY session_id"
        )
        db.execute("COMMIT")
        db.execute("ANALYZE")
    finally:
        db.close()


def _pg_fill(store: Store, url: str, total: int, *, seed: int) -> tuple[str, list[str]]:
    """The product's agents and sessions (cost_queries' own fill, with a token ledger of 1,000 events), then the
    rest of ``total`` in SQL."""
    owner, sessions = cost_queries._fill(store, PriceBook.load(), 1_000, seed=seed)
    _bulk_events(url, total - 1_000, seed=seed)
    return owner, sessions


async def _costs(results: Results, data: Path, url: str, *, size: int, large: int, requests: int) -> None:
    book = PriceBook.load()
    lite_settings = Settings(data_dir=data / "costs-sqlite", worker_enabled=False, rate_limit_rps=1e9)
    lite = Store(lite_settings.database_target)
    try:
        t0 = time.perf_counter()
        owner, sessions = cost_queries._fill(lite, book, size, seed=size)
        print(f"  SQLite ledger at {size:,} events ({time.perf_counter() - t0:.0f}s)", flush=True)
        await cost_queries._measure(results, f"SQLite {_size(size)}", lite, lite_settings, owner, sessions, requests)
    finally:
        lite.close()
    pg_settings = Settings(data_dir=data / "costs-pg", database_url=url, worker_enabled=False, rate_limit_rps=1e9)
    pg = Store(url)
    try:
        t0 = time.perf_counter()
        owner, sessions = _pg_fill(pg, url, size, seed=size)
        print(f"  PostgreSQL ledger at {size:,} events ({time.perf_counter() - t0:.0f}s)", flush=True)
        await cost_queries._measure(results, f"PostgreSQL {_size(size)}", pg, pg_settings, owner, sessions, requests)
        if large > size:
            t0 = time.perf_counter()
            _bulk_events(url, large - size, seed=large)
            print(f"  PostgreSQL ledger at {large:,} events ({time.perf_counter() - t0:.0f}s)", flush=True)
            label = f"PostgreSQL {_size(large)}"
            await cost_queries._measure(results, label, pg, pg_settings, owner, sessions, requests)
    finally:
        pg.close()


async def run(results: Results, *, quick: bool = False) -> None:
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from tests.harness.postgres import start_postgres  # the harness's server, started for this run only

    random.seed(1)
    server = start_postgres()
    try:
        with tempfile.TemporaryDirectory(prefix="vx-bench-pg-") as d:
            data = Path(d)
            _api(results, data / "api", server.create_database(), seconds=3 if quick else 8, rounds=1 if quick else 3)
            _ingest(results, data, server.create_database(), events=5_000 if quick else 20_000)
            await _costs(
                results,
                data,
                server.create_database(),
                size=100_000 if quick else 1_000_000,
                large=200_000 if quick else 10_000_000,
                requests=30 if quick else 200,
            )
    finally:
        server.stop()
