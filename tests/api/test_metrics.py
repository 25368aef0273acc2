"""004's metrics over a hand-computed fixture: outreach events, external costs and voice calls in one ledger."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

import pytest

from core.store import sessions
from core.store import usage as ledger
from pipelines.metering import make_event
from pipelines.pricing import PriceBook
from tests.api.seed import ANALYSIS, seed_agent, seed_call, tenant_of
from tests.conftest import assert_error

BOOK = PriceBook.load()
NOV = "start=2025-11-01&end=2025-11-30"


def _sent(email: str, campaign: str, step: int, ts: str, kind: str = "sent") -> dict:
    return {
        "contact_email": email,
        "campaign": campaign,
        "step": step,
        "event_type": kind,
        "provider": "gmail",
        "provider_message_id": f"{campaign}-{email}-{step}-{kind}",
        "event_ts": ts,
    }


def _usage(store, user, sid, agent_id, key, at, **kw) -> None:
    event = make_event(
        BOOK,
        key=key,
        owner_id=tenant_of(user),
        session_id=sid,
        agent_id=agent_id,
        at=datetime.fromisoformat(at).replace(tzinfo=UTC),
        **kw,
    )
    store.write_sync(ledger.record_events, [event.as_dict()])


async def _post(client, h, path, body):
    resp = await client.post(path, json=body, headers=h)
    assert resp.status == 200, await resp.text()
    assert (await resp.json())["errors"] == 0


@pytest.fixture
async def data(client, auth, store):
    h = auth("alice")
    n = [f"n{i}@ohio.test" for i in range(8)]
    events = [_sent(f"o{i}@ohio.test", "Ohio", 1, "2025-10-15T09:00:00Z") for i in range(10)]  # previous period
    events += [_sent(e, "Ohio", 1, "2025-11-03T09:00:00Z") for e in n]
    events += [_sent(e, "Ohio", 2, "2025-11-10T09:00:00Z") for e in n[:4]]
    events += [_sent(e, "Ohio", 2, "2025-11-12T10:00:00Z", "replied") for e in n[:3]]
    events += [
        _sent(n[3], "Ohio", 2, "2025-11-12T11:00:00Z", "opt_out"),
        _sent(n[4], "Ohio", 1, "2025-11-10T12:00:00Z", "bounced"),
    ]
    events += [_sent(e, "Ohio", 3, "2025-12-01T09:00:00Z") for e in n[:5]]  # after the period
    events += [_sent(f"t{i}@texas.test", "Texas", 1, "2025-11-03T15:30:00.123Z") for i in range(3)]
    await _post(client, h, "/api/events", events)
    costs = [
        {
            "provider": "openai",
            "model": "o3-mini",
            "tokens_in": 291,
            "tokens_out": 572,
            "cost_usd": 0.002837,
            "campaign_name": "Ohio",
            "occurred_at": "2025-11-05T10:00:00Z",
            "run_id": "1",
            "workflow_id": "w",
        },
        {
            "provider": "anthropic",
            "model": "claude",
            "tokens_in": 100,
            "tokens_out": 50,
            "cost_usd": 0.01,
            "campaign_name": "Ohio",
            "occurred_at": "2025-11-05T11:00:00Z",
        },
        {
            "provider": "openai",
            "model": "o3-mini",
            "tokens_in": 1000,
            "tokens_out": 2000,
            "cost_usd": 0.5,
            "campaign_name": "Texas",
            "occurred_at": "2025-11-20T10:00:00Z",
        },
        {
            "provider": "openai",
            "model": "o3-mini",
            "cost_usd": 1,
            "campaign_name": "Ohio",
            "occurred_at": "2025-10-20T10:00:00Z",
        },  # previous period
    ]
    await _post(client, h, "/api/cost-events", costs)
    agent = seed_agent(store, "alice", name="Caller")["id"]
    won = seed_call(
        store,
        "alice",
        agent_id=agent,
        started_at="2025-11-10T10:00:00.000000Z",
        ended_at="2025-11-10T10:02:00.000000Z",
        analysis={**ANALYSIS, "outcome": "resolved"},
    )[1]
    lost = seed_call(
        store, "alice", agent_id=agent, started_at="2025-11-11T10:00:00.000000Z", ended_at="2025-11-11T10:01:00.000000Z"
    )[1]
    plain = seed_call(
        store, "alice", agent_id=agent, started_at="2025-11-12T10:00:00.000000Z", ended_at="2025-11-12T10:00:30.000000Z"
    )[1]
    for sid in (won, lost):
        store.write_sync(sessions.set_campaign, sid, "Ohio")
    _usage(
        store,
        "alice",
        won,
        agent,
        "won",
        "2025-11-10T10:01:00",
        provider="deepgram",
        model=None,
        event_type="stt_minutes",
        quantity=Decimal(2),
    )
    _usage(
        store,
        "alice",
        lost,
        agent,
        "lost",
        "2025-11-11T10:00:30",
        provider="deepgram",
        model=None,
        event_type="stt_minutes",
        quantity=Decimal(1),
    )
    _usage(
        store,
        "alice",
        plain,
        agent,
        "plain",
        "2025-11-12T10:00:10",
        provider="gemini",
        model="gemini-2.5-flash",
        event_type="llm_tokens",
        token_kind="input",
        quantity=Decimal(1000),
    )
    texan = seed_agent(store, "alice", name="Texan", campaign="Texas")["id"]  # its calls default to Texas
    seed_call(
        store,
        "alice",
        agent_id=texan,
        started_at="2025-11-13T10:00:00.000000Z",
        ended_at="2025-11-13T10:00:40.000000Z",
        analysis={**ANALYSIS, "outcome": "Sale made"},
    )
    # bob's data, in the same campaigns and period, must never show in alice's figures
    hb = auth("bob")
    await _post(
        client, hb, "/api/events", [_sent(f"b{i}@x.test", "Ohio", 1, "2025-11-03T09:00:00Z") for i in range(50)]
    )
    await _post(
        client,
        hb,
        "/api/cost-events",
        [{"provider": "openai", "cost_usd": 100, "campaign_name": "Ohio", "occurred_at": "2025-11-05T10:00:00Z"}],
    )
    seed_call(store, "bob", started_at="2025-11-10T10:00:00.000000Z", ended_at="2025-11-10T10:01:00.000000Z")
    return h


async def _get(client, h, path):
    resp = await client.get(path, headers=h)
    assert resp.status == 200, await resp.text()
    return await resp.json()


SEED_SUMMARY_KEYS = {
    "sends",
    "replies",
    "opt_outs",
    "bounces",
    "reply_rate_pct",
    "opt_out_rate_pct",
    "bounce_rate_pct",
    "cost_usd",
    "sends_change_pct",
    "reply_rate_change_pp",
    "opt_out_rate_change_pp",
    "prev_sends",
    "prev_reply_rate_pct",
    "start_date",
    "end_date",
}


async def test_the_summary_compares_with_the_previous_period_of_equal_length(client, data):
    s = await _get(client, data, f"/api/metrics/summary?{NOV}&source=supabase")
    assert set(s) >= SEED_SUMMARY_KEYS
    assert {k: s[k] for k in SEED_SUMMARY_KEYS} == {
        "sends": 15,
        "replies": 3,
        "opt_outs": 1,
        "bounces": 1,
        "reply_rate_pct": 20.0,
        "opt_out_rate_pct": 6.67,
        "bounce_rate_pct": 6.67,
        "cost_usd": 0.525812,
        "sends_change_pct": 50.0,
        "reply_rate_change_pp": 20.0,
        "opt_out_rate_change_pp": 6.7,
        "prev_sends": 10,
        "prev_reply_rate_pct": 0.0,
        "start_date": "2025-11-01",
        "end_date": "2025-11-30",
    }
    # 0.002837 + 0.01 + 0.5 reported, 2 + 1 Deepgram minutes at 0.0043, 1000 Gemini tokens at 0.000075 per 1k
    assert s["cost_nanos"] == 2_837_000 + 10_000_000 + 500_000_000 + 12_900_000 + 75_000
    assert (s["prev_start_date"], s["prev_end_date"]) == ("2025-10-02", "2025-10-31")
    assert s["calls"] == 4 and s["successful_calls"] == 2 and s["success_rate"] == 0.5
    ohio = await _get(client, data, f"/api/metrics/summary?{NOV}&campaign=Ohio")
    assert {
        k: ohio[k]
        for k in (
            "sends",
            "replies",
            "reply_rate_pct",
            "opt_out_rate_pct",
            "prev_sends",
            "prev_reply_rate_pct",
            "sends_change_pct",
            "reply_rate_change_pp",
            "opt_out_rate_change_pp",
            "cost_usd",
            "cost_per_reply",
        )
    } == {
        "sends": 12,
        "replies": 3,
        "reply_rate_pct": 25.0,
        "opt_out_rate_pct": 8.33,
        "prev_sends": 10,
        "prev_reply_rate_pct": 0.0,
        "sends_change_pct": 20.0,
        "reply_rate_change_pp": 25.0,
        "opt_out_rate_change_pp": 8.3,
        "cost_usd": 0.025737,
        "cost_per_reply": 0.008579,
    }
    empty = await _get(client, data, "/api/metrics/summary?start=2024-01-01&end=2024-01-31")
    assert empty["sends"] == 0 and empty["reply_rate_pct"] == 0.0 and empty["sends_change_pct"] is None


async def test_start_and_end_are_required_and_errors_carry_004s_keys(client, data):
    for path in (
        "/api/metrics/summary",
        "/api/metrics/summary?start=2025-11-01",
        "/api/metrics/by-campaign?end=x",
        "/api/metrics/cost-breakdown",
        "/api/metrics/step-breakdown?start=2025-11-02&end=2025-11-01",
        f"/api/metrics/timeseries?{NOV}",
        "/api/metrics/timeseries?metric=sends",
    ):
        body = await assert_error(await client.get(path, headers=data), 400)
        assert body["error"] == "Invalid request format" and body["details"] == body["detail"], path
    await assert_error(await client.get(f"/api/metrics/summary?{NOV}&source=excel", headers=data), 400)


async def test_timeseries_has_a_point_per_day(client, data):
    sends = await _get(client, data, f"/api/metrics/timeseries?metric=sends&{NOV}&campaign=Ohio")
    assert sends["metric"] == "sends" and len(sends["points"]) == 30
    assert {p["day"]: p["value"] for p in sends["points"] if p["value"]} == {"2025-11-03": 8, "2025-11-10": 4}
    rate = await _get(client, data, "/api/metrics/timeseries?metric=reply_rate&start=2025-11-03&end=2025-11-03")
    assert rate["points"] == [{"day": "2025-11-03", "value": 0.0}]
    cost = await _get(client, data, "/api/metrics/timeseries?metric=cost&start=2025-11-05&end=2025-11-10")
    assert [p["value"] for p in cost["points"]] == [0.012837, 0, 0, 0, 0, 0.0086]
    calls = await _get(client, data, "/api/metrics/timeseries?metric=calls&start=2025-11-10&end=2025-11-13")
    assert [p["value"] for p in calls["points"]] == [1, 1, 1, 1]
    minutes = await _get(client, data, "/api/metrics/timeseries?metric=minutes&start=2025-11-10&end=2025-11-11")
    assert [p["value"] for p in minutes["points"]] == [2.0, 1.0]
    success = await _get(client, data, "/api/metrics/timeseries?metric=success_rate&start=2025-11-10&end=2025-11-11")
    assert [p["value"] for p in success["points"]] == [1.0, 0.0]


async def test_by_campaign_adds_cost_per_reply_and_per_successful_call(client, data):
    body = await _get(client, data, f"/api/metrics/by-campaign?{NOV}&source=sheets")
    assert (body["start_date"], body["end_date"]) == ("2025-11-01", "2025-11-30")
    ohio, texas = body["campaigns"]
    assert {
        k: ohio[k]
        for k in (
            "campaign",
            "sends",
            "replies",
            "opt_outs",
            "bounces",
            "reply_rate_pct",
            "opt_out_rate_pct",
            "bounce_rate_pct",
            "cost_usd",
            "cost_per_reply",
        )
    } == {
        "campaign": "Ohio",
        "sends": 12,
        "replies": 3,
        "opt_outs": 1,
        "bounces": 1,
        "reply_rate_pct": 25.0,
        "opt_out_rate_pct": 8.33,
        "bounce_rate_pct": 8.33,
        "cost_usd": 0.025737,
        "cost_per_reply": 0.008579,
    }
    assert ohio["voice"] == {
        "calls": 2,
        "minutes": 3.0,
        "cost_usd": 0.0129,
        "cost_nanos": 12_900_000,
        "successful_calls": 1,
        "cost_per_successful_call": 0.0129,
        "cost_per_successful_call_nanos": 12_900_000,
        "unpriced_event_count": 0,
    }
    assert texas["campaign"] == "Texas" and texas["sends"] == 3 and texas["cost_usd"] == 0.5
    assert texas["cost_per_reply"] is None
    assert texas["voice"]["calls"] == 1 and texas["voice"]["successful_calls"] == 1
    assert texas["voice"]["cost_per_successful_call"] == 0.0


async def test_the_cost_breakdown_covers_external_costs_and_voice_usage(client, data):
    body = await _get(client, data, f"/api/metrics/cost-breakdown?{NOV}")
    assert body["total"] == {
        "cost_usd": 0.525812,
        "tokens_in": 291 + 100 + 1000 + 1000,
        "tokens_out": 572 + 50 + 2000,
        "calls": 6,
        "cost_nanos": 525_812_000,
        "unpriced_event_count": 0,
    }
    assert [(p["provider"], p["cost_usd"], p["calls"]) for p in body["by_provider"]] == [
        ("openai", 0.502837, 2),
        ("deepgram", 0.0129, 2),
        ("anthropic", 0.01, 1),
        ("gemini", 0.000075, 1),
    ]
    assert body["by_model"][0] == {
        "model": "o3-mini",
        "provider": "openai",
        "cost_usd": 0.502837,
        "tokens_in": 1291,
        "tokens_out": 2572,
        "calls": 2,
        "cost_nanos": 502_837_000,
        "unpriced_event_count": 0,
    }
    assert body["daily"] == [
        {"day": "2025-11-05", "value": 0.012837},
        {"day": "2025-11-10", "value": 0.0086},
        {"day": "2025-11-11", "value": 0.0043},
        {"day": "2025-11-12", "value": 0.000075},
        {"day": "2025-11-20", "value": 0.5},
    ]
    ohio = await _get(
        client, data, f"/api/metrics/cost-breakdown?{NOV}&campaign=Ohio&workspace_id={tenant_of('alice')}"
    )
    assert ohio["total"]["cost_nanos"] == 25_737_000 and ohio["total"]["calls"] == 4
    await assert_error(
        await client.get(f"/api/metrics/cost-breakdown?{NOV}&workspace_id={tenant_of('bob')}", headers=data), 404
    )


async def test_steps_campaigns_and_the_sheet_view(client, auth, data):
    steps = await _get(client, data, f"/api/metrics/step-breakdown?{NOV}")
    assert steps == {
        "steps": [
            {"step": 1, "name": "Email 1", "sends": 11, "lastSentAt": "2025-11-03T15:30:00.123Z"},
            {"step": 2, "name": "Email 2", "sends": 4, "lastSentAt": "2025-11-10T09:00:00.000Z"},
        ],
        "dailySends": [{"date": "2025-11-03", "count": 11}, {"date": "2025-11-10", "count": 4}],
        "totalSends": 15,
        "dateRange": {"start": "2025-11-01", "end": "2025-11-30"},
        "source": "sheets",
    }
    # 004's shape; fields the dialer's campaigns carry (id, status, ...) are null on names only the data carries
    listed = (await _get(client, data, "/api/campaigns"))["campaigns"]
    assert [c["name"] for c in listed] == ["Ohio", "Texas"] and {c["id"] for c in listed} == {None}
    assert [c["name"] for c in (await _get(client, auth("bob"), "/api/campaigns"))["campaigns"]] == ["Ohio"]
    stats = await _get(client, data, "/api/sheets?format=stats&campaign=Ohio")
    assert stats == {
        "success": True,
        "stats": {
            "totalContacts": 18,
            "email1Sends": 18,
            "email2Sends": 4,
            "email3Sends": 5,
            "totalSends": 27,
            "uniqueContactsSent": 18,
            "replies": 3,
            "optOuts": 1,
            "replyRate": 16.67,
            "optOutRate": 5.56,
            "campaignName": "Ohio",
        },
        "rows": None,
        "total": None,
        "limit": None,
        "offset": None,
    }
    raw = await _get(client, data, "/api/sheets?format=raw&campaign=Texas")
    assert raw["total"] == 3 and {r["contact_email"] for r in raw["rows"]} == {f"t{i}@texas.test" for i in range(3)}
    await assert_error(await client.get(f"/api/sheets?format=raw&offset={10**20}", headers=data), 400)
    bob = await _get(client, auth("bob"), "/api/sheets")
    assert bob["stats"]["totalSends"] == 50
