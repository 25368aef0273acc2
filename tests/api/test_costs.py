from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from core.store import usage as ledger
from core.store.timefmt import now_iso
from pipelines.metering import make_event
from pipelines.pricing import PriceBook, PricingError, cost_nanos
from tests.api.seed import seed_call, tenant_of
from tests.conftest import assert_error, table_snapshot

BOOK = PriceBook.load()


def nanos(usd: str) -> int:
    return int(Decimal(usd) * 10**9)


async def _post(client, h, body, key=None):
    headers = dict(h)
    if key:
        headers["Idempotency-Key"] = key
    return await client.post("/api/usage/events", json=body, headers=headers)


async def test_an_event_is_priced_from_the_price_book_and_served_in_every_cost_view(client, auth, store):
    agent_id, sid = seed_call(store, "alice", started_at=now_iso(), ended_at=None)
    h = auth("alice")
    r = await _post(
        client, h, {"session_id": sid, "provider": "Deepgram", "event_type": "stt_minutes", "quantity": 2.5}, key="k1"
    )
    assert r.status == 201
    ev = await r.json()
    assert (
        ev["provider"] == "deepgram"
        and ev["agent_id"] == agent_id
        and ev["user_id"] == tenant_of("alice") == ev["tenant_id"]
    )
    assert ev["unit_cost"] == 0.0043 and ev["total_cost"] == 0.01075 and ev["total_cost_nanos"] == 10_750_000
    assert ev["priced"] and ev["price_version"].startswith(BOOK.version)
    r = await _post(
        client,
        h,
        {"session_id": sid, "provider": "gemini", "event_type": "llm_tokens", "token_kind": "output", "quantity": 1234},
    )
    assert (await r.json())["total_cost_nanos"] == cost_nanos(Decimal(1234), Decimal("0.000075") / 1000)

    summary = await (await client.get("/api/costs/summary", headers=h)).json()
    total = 10_750_000 + cost_nanos(Decimal(1234), Decimal("0.000075") / 1000)
    assert summary["total_cost_nanos"] == total and summary["this_month_cost"] == summary["total_cost"]
    assert set(summary["by_provider"]) == {"deepgram", "gemini"} and summary["unpriced_event_count"] == 0
    timeline = await (await client.get("/api/costs/timeline?period=daily", headers=h)).json()
    assert len(timeline) == 1 and timeline[0]["date"] == now_iso()[:10] and timeline[0]["total_cost_nanos"] == total
    by_agent = await (await client.get("/api/costs/by-agent", headers=h)).json()
    assert by_agent == [
        {
            "agent_id": agent_id,
            "agent_name": "A",
            "total_cost": total / 1e9,
            "session_count": 1,
            "event_count": 2,
            "total_cost_nanos": total,
        }
    ]
    breakdown = await (await client.get(f"/api/sessions/{sid}/cost-breakdown", headers=h)).json()
    assert breakdown["session_id"] == sid and breakdown["total_cost_nanos"] == total
    assert [e["event_type"] for e in breakdown["events"]] == ["stt_minutes", "llm_tokens"]
    assert breakdown["cost_by_type"] == {"llm_tokens": (total - 10_750_000) / 1e9, "stt_minutes": 0.01075}
    metrics = await (await client.get("/api/dashboard/metrics", headers=h)).json()
    assert metrics["totalCost"] == metrics["costToday"] == total / 1e9
    # bob sees none of it
    assert (await (await client.get("/api/costs/summary", headers=auth("bob"))).json())["total_cost"] == 0


async def test_client_prices_must_add_up_and_bad_events_write_nothing(client, auth, settings):
    h = auth("alice")
    before = table_snapshot(settings)
    bad = [
        {"provider": "deepgram", "event_type": "stt_minutes", "quantity": 2, "unit_cost": 0.0043, "total_cost": 0.009},
        {"provider": "deepgram", "event_type": "stt_minutes", "quantity": 2, "unit_cost": 0.0043},
        {"provider": "deepgram", "event_type": "stt_minutes", "quantity": -1},
        {"provider": "deepgram", "event_type": "stt_minutes", "quantity": "2"},
        {"provider": "deepgram", "event_type": "minutes", "quantity": 2},
        {"provider": "deepgram", "event_type": "stt_minutes", "quantity": 2, "user_id": "bob"},
    ]
    for body in bad:
        await assert_error(await _post(client, h, body), 422, "validation_error")
    await assert_error(
        await _post(
            client, h, {"provider": "deepgram", "event_type": "stt_minutes", "quantity": 1, "session_id": "nope"}
        ),
        404,
    )
    assert table_snapshot(settings) == before
    ok = await _post(
        client,
        h,
        {"provider": "deepgram", "event_type": "stt_minutes", "quantity": 2, "unit_cost": 0.0043, "total_cost": 0.0086},
    )
    assert ok.status == 201 and (await ok.json())["price_version"] == "client"


async def test_unpriced_usage_is_recorded_flagged_and_counted_never_priced_at_zero(client, auth):
    h = auth("alice")
    ev = await (await _post(client, h, {"provider": "openai", "event_type": "llm_tokens", "quantity": 50})).json()
    assert ev["priced"] is False and ev["total_cost"] is None and ev["unit_cost"] is None
    summary = await (await client.get("/api/costs/summary", headers=h)).json()
    assert summary["unpriced_event_count"] == 1 and summary["event_count"] == 1 and summary["total_cost"] == 0


async def test_same_key_same_body_replays_and_different_body_conflicts(client, auth, settings):
    h = auth("alice")
    body = {"id": "evt-1", "provider": "resemble", "event_type": "tts_characters", "quantity": 120}
    first = await _post(client, h, body)
    again = await _post(client, h, body)
    via_header = await _post(client, h, {k: v for k, v in body.items() if k != "id"}, key="evt-1")
    assert (first.status, again.status) == (201, 200) and again.headers["Idempotent-Replayed"] == "true"
    assert await first.json() == await again.json()
    before = table_snapshot(settings)
    await assert_error(await _post(client, h, {**body, "quantity": 121}), 409, "conflict")
    assert table_snapshot(settings) == before
    assert via_header.status == 200  # the header key and the body id name the same event
    assert (await via_header.json())["id"] == (await first.json())["id"]


async def test_replaying_a_thousand_events_one_to_five_times_keeps_exactly_a_thousand(client, auth):
    h = auth("alice")
    rng = random.Random(7)
    events = []
    for i in range(1000):
        kind = rng.choice(["stt_minutes", "llm_tokens", "tts_characters"])
        provider = {
            "stt_minutes": rng.choice(["deepgram", "assemblyai", "elevenlabs"]),
            "llm_tokens": "gemini",
            "tts_characters": rng.choice(["resemble", "elevenlabs"]),
        }[kind]
        qty = round(rng.uniform(0.01, 3), 6) if kind == "stt_minutes" else rng.randint(1, 5000)
        events.append({"id": f"e{i}", "provider": provider, "event_type": kind, "quantity": qty})
    sends = [e for e in events for _ in range(rng.randint(1, 5))]
    rng.shuffle(sends)
    for i in range(0, len(sends), 50):
        import asyncio

        results = await asyncio.gather(*[_post(client, h, e) for e in sends[i : i + 50]])
        assert {r.status for r in results} <= {200, 201}
    expected = 0
    now = datetime.now(UTC)
    for e in events:
        q = BOOK.quote(provider=e["provider"], event_type=e["event_type"], model=None, token_kind=None, at=now)
        expected += cost_nanos(Decimal(str(e["quantity"])), q.unit_cost)
    summary = await (await client.get("/api/costs/summary", headers=h)).json()
    assert summary["event_count"] == 1000
    assert summary["total_cost_nanos"] == expected
    by_provider_sum = sum(Decimal(str(v)) for v in summary["by_provider"].values())
    assert by_provider_sum * 10**9 == expected


def test_a_malformed_price_book_refuses_to_load(tmp_path):
    head = "version: v\nprices:\n- {provider: x, event_type: stt_minutes, "
    cases = {
        "float rate": head + "unit: minute, rate: 0.1, effective_from: 2024-01-01}\n",
        "bad unit": head + "unit: parsec, rate: '0.1', effective_from: 2024-01-01}\n",
        "unit for another type": head + "unit: character, rate: '0.1', effective_from: 2024-01-01}\n",
        "not yaml": "version: [unclosed\n",
        "no prices": "version: v\nprices: []\n",
    }
    for name, text in cases.items():
        p = tmp_path / f"{name}.yaml"
        p.write_text(text)
        with pytest.raises(PricingError):
            PriceBook.load(p)


def test_the_newest_effective_price_applies_and_model_prices_beat_wildcards(tmp_path):
    p = tmp_path / "p.yaml"
    p.write_text(
        "version: v2\nprices:\n"
        "- {provider: deepgram, event_type: stt_minutes, unit: minute, rate: '0.01', effective_from: 2024-01-01}\n"
        "- {provider: deepgram, event_type: stt_minutes, unit: minute, rate: '0.02', effective_from: 2026-06-01}\n"
        "- {provider: deepgram, event_type: stt_minutes, model: nova-3, unit: hour, rate: '0.6', "
        "effective_from: 2024-01-01}\n"
    )
    book = PriceBook.load(p)

    def at(d):
        return datetime.fromisoformat(d + "T12:00:00+00:00")

    assert book.quote(
        provider="deepgram", event_type="stt_minutes", model=None, token_kind=None, at=at("2026-05-31")
    ).unit_cost == Decimal("0.01")
    assert book.quote(
        provider="deepgram", event_type="stt_minutes", model=None, token_kind=None, at=at("2026-06-01")
    ).unit_cost == Decimal("0.02")
    assert book.quote(
        provider="Deepgram", event_type="stt_minutes", model="nova-3", token_kind=None, at=at("2026-06-01")
    ).unit_cost == Decimal("0.01")


def _seed_usage(store, owner: str, sid: str, agent_id: str, n: int) -> list[dict]:
    """n events in one session: the three kinds, some unpriced, some sharing a timestamp (then the key orders)."""
    base = datetime(2026, 1, 10, 10, 0, tzinfo=UTC)
    kinds = [
        ("deepgram", "stt_minutes", Decimal("0.25")),
        ("gemini", "llm_tokens", Decimal(321)),
        ("elevenlabs", "tts_characters", Decimal(57)),
        ("openai", "llm_tokens", Decimal(99)),
    ]  # openai: unpriced
    events = []
    for i in range(n):
        provider, kind, qty = kinds[i % len(kinds)]
        events.append(
            make_event(
                BOOK,
                key=f"k{i:03d}",
                owner_id=owner,
                session_id=sid,
                agent_id=agent_id,
                provider=provider,
                model=None,
                event_type=kind,
                quantity=qty,
                token_kind="output" if kind == "llm_tokens" else None,
                at=base + timedelta(seconds=(n - i) // 3),
            ).as_dict()
        )
    store.write_sync(ledger.record_events, events)
    return sorted(events, key=lambda e: (e["occurred_at"], e["idempotency_key"]))


def _totals(breakdown: dict) -> dict:
    return {
        k: breakdown[k]
        for k in (
            "session_id",
            "total_cost",
            "cost_by_type",
            "unpriced_event_count",
            "total_cost_nanos",
            "events_total",
        )
    }


async def test_the_breakdown_pages_its_events_while_every_total_counts_all_of_them(client, auth, store):
    agent_id, sid = seed_call(store, "alice")
    events = _seed_usage(store, tenant_of("alice"), sid, agent_id, 150)
    h = auth("alice")
    by_type: dict[str, int] = {}
    for e in events:
        by_type[e["event_type"]] = by_type.get(e["event_type"], 0) + (e["total_cost_nanos"] or 0)
    expected = {
        "session_id": sid,
        "total_cost": sum(by_type.values()) / 1e9,
        "cost_by_type": {k: v / 1e9 for k, v in sorted(by_type.items())},
        "unpriced_event_count": sum(1 for e in events if e["total_cost_nanos"] is None),
        "total_cost_nanos": sum(by_type.values()),
        "events_total": 150,
    }
    assert expected["unpriced_event_count"] > 0

    url = f"/api/sessions/{sid}/cost-breakdown"
    default = await (await client.get(url, headers=h)).json()
    assert _totals(default) == expected
    assert (default["events_limit"], default["events_offset"]) == (100, 0)
    keys = [e["idempotency_key"] for e in events]
    assert [e["idempotency_key"] for e in default["events"]] == keys[:100]

    everything = await (await client.get(url, params={"events_limit": 1000}, headers=h)).json()
    assert [e["idempotency_key"] for e in everything["events"]] == keys
    assert _totals(everything) == expected

    pages = []
    for offset in range(0, 160, 40):
        page = await (await client.get(url, params={"events_limit": 40, "events_offset": offset}, headers=h)).json()
        assert _totals(page) == expected
        assert (page["events_limit"], page["events_offset"]) == (40, offset)
        pages.extend(page["events"])
    assert pages == everything["events"]
    assert len(pages) == 150

    for params in ({"events_limit": 0}, {"events_offset": 150}, {"events_offset": 10**9}):
        empty = await (await client.get(url, params=params, headers=h)).json()
        assert empty["events"] == [] and _totals(empty) == expected


async def test_bad_event_paging_is_refused_with_the_one_error_body(client, auth, store):
    _, sid = seed_call(store, "alice")
    h = auth("alice")
    url = f"/api/sessions/{sid}/cost-breakdown"
    for params in (
        {"events_limit": "-1"},
        {"events_limit": "1001"},
        {"events_limit": "ten"},
        {"events_limit": "2.5"},
        {"events_limit": ""},
        {"events_offset": "-1"},
        {"events_offset": "1e3"},
        {"events_offset": str(10**9 + 1)},
    ):
        body = await assert_error(await client.get(url, params=params, headers=h), 422, "validation_error")
        assert next(iter(params)) in body["detail"], body
    # and someone else's session is still not found, whatever the paging
    await assert_error(await client.get(url, params={"events_limit": 5}, headers=auth("bob")), 404, "not_found")
