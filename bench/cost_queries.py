"""Cost queries at scale: p50/p95 of the four cost endpoints over HTTP with 1M and 10M usage events in the ledger,
and their totals checked exactly against full-scan queries. The session breakdown is read as a client does, with the
default page of events; its totals must still cover every event of the session."""

from __future__ import annotations

import random
import tempfile
import time
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

from aiohttp.test_utils import TestClient, TestServer

from api.app import create_app
from api.auth import LocalIssuer
from api.schemas.agents import storage
from core.settings import Settings
from core.store import agents as agents_repo
from core.store import sessions as sessions_repo
from core.store import usage as ledger
from core.store.db import Store
from core.store.tenants import personal_tenant_id
from core.store.timefmt import to_iso
from pipelines.metering import make_event
from pipelines.pricing import PriceBook

from .common import Results, pct

USERS = 20
AGENTS_PER_USER = 10
SESSIONS_PER_USER = 2000
DAYS = 90


def _fill(store: Store, book: PriceBook, total: int, *, seed: int = 1) -> tuple[str, list[str]]:
    rng = random.Random(seed)
    now = datetime.now(UTC)
    owners = [personal_tenant_id(f"user{u}") for u in range(USERS)]  # each user's personal tenant
    agents: dict[str, list[str]] = {}
    sessions: dict[str, list[tuple[str, str]]] = {}
    for owner in owners:
        agents[owner] = [
            store.write_sync(
                agents_repo.create,
                owner,
                storage(
                    {
                        "name": f"agent {i}",
                        "systemPrompt": "",
                        "sttProvider": "deepgram",
                        "llmProvider": "gemini",
                        "ttsProvider": "elevenlabs",
                    }
                ),
            )["id"]
            for i in range(AGENTS_PER_USER)
        ]

        def mk(db, owner=owner):
            out = []
            for i in range(SESSIONS_PER_USER):
                agent = agents[owner][i % AGENTS_PER_USER]
                start = to_iso(now - timedelta(days=rng.random() * DAYS))
                out.append(
                    (sessions_repo.create(db, owner_id=owner, agent_id=agent, status="ended", started_at=start), agent)
                )
            return out

        sessions[owner] = store.write_sync(mk)
    kinds = [
        ("deepgram", "stt_minutes"),
        ("assemblyai", "stt_minutes"),
        ("gemini", "llm_tokens"),
        ("elevenlabs", "tts_characters"),
        ("resemble", "tts_characters"),
    ]
    batch, written, t0 = 5000, 0, time.perf_counter()
    futures = []
    while written < total:
        chunk = []
        for i in range(min(batch, total - written)):
            # user0 is the heavy tenant the queries read: a third of all usage
            owner = owners[0] if rng.random() < 0.33 else rng.choice(owners)
            sid, agent = rng.choice(sessions[owner])
            provider, kind = rng.choice(kinds)
            qty = Decimal(rng.randint(1, 60_000)) / 60_000 if kind == "stt_minutes" else Decimal(rng.randint(1, 2000))
            chunk.append(
                make_event(
                    book,
                    key=f"{seed}/{written + i}",
                    owner_id=owner,
                    session_id=sid,
                    agent_id=agent,
                    provider=provider,
                    model=None,
                    event_type=kind,
                    quantity=qty,
                    token_kind="output" if kind == "llm_tokens" else None,
                    at=now - timedelta(seconds=rng.random() * DAYS * 86400),
                ).as_dict()
            )
        futures.append(store.submit(ledger.record_events, chunk))
        if len(futures) > 4:
            futures.pop(0).result()
        written += len(chunk)
        if written % 1_000_000 < batch:
            print(f"  ledger: {written:,} events ({written / (time.perf_counter() - t0):,.0f}/s)", flush=True)
    for f in futures:
        f.result()
    return owners[0], [s for s, _ in sessions[owners[0]]]


def _full_scan(store: Store, owner: str, session_id: str) -> dict:
    def q(db):
        total = db.execute(
            "SELECT COALESCE(SUM(total_cost_nanos),0) FROM usage_events WHERE owner_id = ?", [owner]
        ).fetchone()[0]
        by_provider = dict(
            db.execute(
                "SELECT provider, SUM(total_cost_nanos) FROM usage_events WHERE owner_id = ? GROUP BY provider", [owner]
            ).fetchall()
        )
        by_day = dict(
            db.execute(
                "SELECT substr(occurred_at,1,10), SUM(total_cost_nanos) FROM usage_events "
                "WHERE owner_id = ? GROUP BY 1",
                [owner],
            ).fetchall()
        )
        by_agent = dict(
            db.execute(
                "SELECT agent_id, SUM(total_cost_nanos) FROM usage_events WHERE owner_id = ? GROUP BY agent_id", [owner]
            ).fetchall()
        )
        session, session_events, session_unpriced = db.execute(
            "SELECT COALESCE(SUM(total_cost_nanos),0), COUNT(*), COUNT(*) - COUNT(total_cost_nanos) FROM usage_events "
            "WHERE session_id = ?",
            [session_id],
        ).fetchone()
        session_by_type = dict(
            db.execute(
                "SELECT event_type, COALESCE(SUM(total_cost_nanos),0) FROM usage_events "
                "WHERE session_id = ? GROUP BY event_type",
                [session_id],
            ).fetchall()
        )
        return {
            "total": total,
            "by_provider": by_provider,
            "by_day": by_day,
            "by_agent": by_agent,
            "session": session,
            "session_events": session_events,
            "session_unpriced": session_unpriced,
            "session_by_type": session_by_type,
        }

    return store.read_sync(q)


async def _measure(
    results: Results, label: str, store: Store, settings: Settings, owner: str, sessions: list[str], requests: int
) -> None:
    app = create_app(settings, store=store)
    async with TestClient(TestServer(app, host="127.0.0.1")) as client:
        h = {"Authorization": f"Bearer {LocalIssuer(settings.data_dir).issue('user0')}"}
        sid = sessions[0]
        paths = {
            "summary": "/api/costs/summary",
            "timeline": "/api/costs/timeline?period=daily",
            "by-agent": "/api/costs/by-agent",
            "session breakdown": f"/api/sessions/{sid}/cost-breakdown",
        }
        for name, path in paths.items():
            times = []
            for _ in range(requests):
                t0 = time.perf_counter()
                r = await client.get(path, headers=h)
                await r.read()
                times.append(time.perf_counter() - t0)
                assert r.status == 200
            p50, p95 = pct(times, 0.5) * 1000, pct(times, 0.95) * 1000
            results.add(
                f"4 cost queries {label}", f"{name} p50 / p95", f"{p50:.1f} / {p95:.1f} ms", "p95 <= 20 ms", p95 <= 20
            )
        scan = _full_scan(store, owner, sid)
        summary = await (await client.get(paths["summary"], headers=h)).json()
        timeline = await (await client.get(paths["timeline"], headers=h)).json()
        by_agent = await (await client.get(paths["by-agent"], headers=h)).json()
        breakdown = await (await client.get(paths["session breakdown"], headers=h)).json()
        # one default page of events, totals over all of them
        paged = (
            len(breakdown["events"]) == min(breakdown["events_limit"], scan["session_events"])
            and breakdown["events_offset"] == 0
        )
        exact = (
            summary["total_cost_nanos"] == scan["total"]
            and {p: round(v * 1e9) for p, v in summary["by_provider"].items()} == scan["by_provider"]
            and {t["date"]: t["total_cost_nanos"] for t in timeline} == scan["by_day"]
            and {a["agent_id"]: a["total_cost_nanos"] for a in by_agent} == scan["by_agent"]
            and breakdown["total_cost_nanos"] == scan["session"]
            and breakdown["events_total"] == scan["session_events"]
            and breakdown["unpriced_event_count"] == scan["session_unpriced"]
            and {k: round(v * 1e9) for k, v in breakdown["cost_by_type"].items()} == scan["session_by_type"]
        )
        results.add(
            f"4 cost queries {label}",
            "session breakdown: events paged, totals over all",
            f"{len(breakdown['events'])} of {breakdown['events_total']} events",
            "default page",
            paged,
        )
        results.add(
            f"4 cost queries {label}",
            "totals equal a full-scan query",
            "exact" if exact else "MISMATCH",
            "exact",
            exact,
        )


async def run(results: Results, *, sizes: tuple[int, ...] = (1_000_000, 10_000_000), requests: int = 200) -> None:
    book = PriceBook.load()
    with tempfile.TemporaryDirectory(prefix="vx-bench-costs-") as d:
        settings = Settings(data_dir=Path(d), worker_enabled=False, rate_limit_rps=1e9)
        store = Store(settings.database_target)
        have, owner, sessions = 0, "", []
        for size in sizes:
            t0 = time.perf_counter()
            owner, sessions = _fill(store, book, size - have, seed=size)
            have = size
            print(f"  ledger at {size:,} events ({time.perf_counter() - t0:.0f}s)", flush=True)
            await _measure(results, f"{size // 1_000_000}M", store, settings, owner, sessions, requests)
        store.close()
