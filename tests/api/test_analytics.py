"""003's call analytics from recorded sessions with analyses, and cost per successful call."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from api.services.analytics import is_success
from core.settings import Settings
from core.store import usage as ledger
from core.store.timefmt import to_iso
from pipelines.metering import make_event
from pipelines.pricing import PriceBook
from tests.api.seed import ANALYSIS, seed_agent, seed_call, tenant_of
from tests.conftest import assert_error

BOOK = PriceBook.load()
NOW = datetime.now(UTC).replace(microsecond=0)


def _at(hours: float) -> str:
    return to_iso(NOW - timedelta(hours=hours))


def _minutes(store, user: str, sid: str, agent_id: str, minutes: str) -> int:
    event = make_event(
        BOOK,
        key=f"{sid}:stt",
        owner_id=tenant_of(user),
        session_id=sid,
        agent_id=agent_id,
        provider="deepgram",
        model=None,
        event_type="stt_minutes",
        quantity=Decimal(minutes),
    )
    store.write_sync(ledger.record_events, [event.as_dict()])
    return event.total_cost_nanos


@pytest.fixture
def calls(store):
    """alice: agent Support (3 calls in the last day: one resolved, one not, one never analysed) and agent Sales
    (one booked call 40 days ago). bob: one resolved call that must never count for alice."""
    support = seed_agent(store, "alice", name="Support")["id"]
    sales = seed_agent(store, "alice", name="Sales")["id"]
    a1 = seed_call(
        store,
        "alice",
        agent_id=support,
        started_at=_at(2),
        ended_at=_at(2 - 65 / 3600),
        analysis={**ANALYSIS, "outcome": "Issue resolved"},
    )[1]
    seed_call(
        store,
        "alice",
        agent_id=support,
        started_at=_at(3),
        ended_at=_at(3 - 120 / 3600),
        analysis={**ANALYSIS, "outcome": "not resolved, caller will call back"},
    )
    a3 = seed_call(store, "alice", agent_id=support, started_at=_at(2.5), ended_at=_at(2.5 - 31 / 3600))[1]
    seed_call(
        store,
        "alice",
        agent_id=sales,
        started_at=_at(40 * 24),
        ended_at=_at(40 * 24 - 0.1),
        analysis={**ANALYSIS, "outcome": "Appointment booked"},
    )
    seed_call(store, "bob", started_at=_at(1), ended_at=_at(0.9), analysis=ANALYSIS)
    cost = _minutes(store, "alice", a1, support, "2") + _minutes(store, "alice", a3, support, "1")
    return {"support": support, "sales": sales, "cost": cost}


def test_success_is_an_outcome_with_a_success_word_and_no_negation():
    terms = Settings().success_outcomes
    assert is_success("Issue resolved", terms) and is_success("Appointment booked for Tuesday", terms)
    for outcome in (
        "not resolved",
        "unresolved",
        "Caller declined the appointment",
        "no sale",
        "",
        None,
        "left a voicemail",
        "information given",
    ):
        assert not is_success(outcome, terms), outcome
    assert is_success("refund issued", ("refund issued",)) and not is_success("refund", ("refund issued",))


async def test_the_summary_counts_the_periods_calls_and_their_success(client, auth, calls):
    h = auth("alice")
    day = await (await client.get("/api/analytics/summary?period=day", headers=h)).json()
    assert {
        k: day[k]
        for k in (
            "total_agents",
            "total_calls",
            "total_minutes",
            "average_call_duration",
            "success_rate",
            "busiest_hour",
        )
    } == {
        "total_agents": 2,
        "total_calls": 3,
        "total_minutes": round((65 + 120 + 31) / 60, 2),
        "average_call_duration": 72,
        "success_rate": 0.33,
        "busiest_hour": min(
            (int(_at(h)[11:13]) for h in (2, 3, 2.5)),
            key=lambda hr: (-[int(_at(x)[11:13]) for x in (2, 3, 2.5)].count(hr), hr),
        ),
    }
    assert day["top_agents"] == [
        {"agent_id": calls["support"], "name": "Support", "calls": 3, "minutes": round(216 / 60, 2)}
    ]
    assert day["successful_calls"] == 1 and day["cost_nanos"] == calls["cost"]
    everything = await (await client.get("/api/analytics/summary", headers=h)).json()
    assert everything["total_calls"] == 4 and everything["success_rate"] == 0.5
    assert [a["agent_id"] for a in everything["top_agents"]] == [calls["support"], calls["sales"]]
    own = await client.get(f"/api/analytics/summary?tenant_id={tenant_of('alice')}", headers=h)
    assert (await own.json())["total_calls"] == 4
    await assert_error(await client.get(f"/api/analytics/summary?tenant_id={tenant_of('bob')}", headers=h), 404)
    await assert_error(await client.get("/api/analytics/summary?period=decade", headers=h), 422)
    bob = await (await client.get("/api/analytics/summary", headers=auth("bob"))).json()
    assert bob["total_calls"] == 1 and bob["success_rate"] == 1.0 and bob["total_agents"] == 1


async def test_an_agents_analytics_add_cost_per_successful_call(client, auth, calls):
    h = auth("alice")
    body = await (await client.get(f"/api/analytics/agents/{calls['support']}?period=week", headers=h)).json()
    assert body["agent_id"] == calls["support"] and body["name"] == "Support"
    assert body["total_calls"] == 3 and body["success_rate"] == 0.33 and body["average_call_duration"] == 72
    assert sum(body["hourly_distribution"].values()) == 3
    assert all(k.isdigit() for k in body["hourly_distribution"])
    assert sum(d["calls"] for d in body["daily_trend"]) == 3
    # All usage counts, the unanalysed call's too; one success carries it all.
    assert body["cost_nanos"] == calls["cost"] == 12_900_000 and body["cost_usd"] == 0.0129
    assert body["successful_calls"] == 1 and body["cost_per_successful_call"] == 0.0129
    sales = await (await client.get(f"/api/analytics/agents/{calls['sales']}?period=month", headers=h)).json()
    assert sales["total_calls"] == 0 and sales["cost_per_successful_call"] is None and sales["daily_trend"] == []
    await assert_error(await client.get(f"/api/analytics/agents/{calls['support']}", headers=auth("bob")), 404)
