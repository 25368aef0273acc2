"""Campaigns on the API (a LiveKit twirp stub takes the dispatches) with the dialer driven round by round on a clock
the test sets: what a campaign accepts and refuses, its state machine, the concurrency cap, retries by outcome,
the schedule window, the do-not-call list, the circuit breaker, a restart mid-campaign with no contact dialled
twice, and counts and costs equal to the ledger. The job's part (the SIP outcome of each dial) is written the way
the job writes it (core/store/calls.py `transition`)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from api.keys import LIVEKIT
from api.services.dialer import Dialer
from core.store import calls as calls_repo
from core.store import campaigns as campaigns_repo
from core.store import sessions as sessions_repo
from core.store import tenants as tenants_repo
from core.store import usage as ledger
from core.store.timefmt import to_iso
from core.store.usage import usd
from pipelines.metering import make_event
from pipelines.pricing import PriceBook
from tests.api.seed import AGENT_WIRE, tenant_of
from tests.conftest import assert_error, db_rows, table_snapshot

NUMBERS = [f"+1415555{n:04d}" for n in range(100, 110)]  # valid US numbers
MONDAY_9AM_PARIS = datetime(2026, 12, 7, 8, 0, tzinfo=UTC)  # 09:00 in Europe/Paris (CET)


@pytest.fixture
def settings(settings):
    return settings.with_(sip_outbound_trunk_id="ST_test", campaign_dial_interval_seconds=0)


class Clock:
    def __init__(self, at: datetime) -> None:
        self.at = at

    def __call__(self) -> datetime:
        return self.at

    def advance(self, seconds: float) -> None:
        self.at += timedelta(seconds=seconds)


@pytest.fixture
def clock() -> Clock:
    return Clock(MONDAY_9AM_PARIS)


@pytest.fixture
def dialer(client, store, settings, clock) -> Dialer:
    return Dialer(store, client.app[LIVEKIT], settings, now=clock, pace_seconds=0)


async def _agent(client, auth, user: str = "alice") -> str:
    resp = await client.post("/api/agents", json=AGENT_WIRE, headers=auth(user))
    return (await resp.json())["id"]


async def _campaign(client, auth, agent_id: str, n: int = 3, **over) -> dict:
    body = {
        "name": over.pop("name", "spring"),
        "agent_id": agent_id,
        "contacts": [{"phone_number": p, "variables": {"customer": f"C{i}"}} for i, p in enumerate(NUMBERS[:n])],
        **over,
    }
    resp = await client.post("/api/campaigns", json=body, headers=auth("alice"))
    assert resp.status == 201, await resp.text()
    return await resp.json()


async def _act(client, auth, cid: str, action: str, user: str = "alice"):
    return await client.post(f"/api/campaigns/{cid}/{action}", headers=auth(user))


def _live_calls(store, cid: str) -> list[dict]:
    return store.read_sync(
        lambda db: list(
            db.query(
                "SELECT a.call_id, k.phone_number, c.status FROM campaign_attempts a "
                "JOIN campaign_contacts k ON k.id = a.contact_id JOIN outbound_calls c ON c.id = a.call_id "
                "WHERE a.campaign_id = ? AND c.status IN ('RINGING', 'ANSWERED') ORDER BY a.id",
                [cid],
            )
        )
    )


def _end(store, call_id: str, status: str, reason: str | None = None, sip: int | None = None) -> None:
    """What the job writes when the dial (or the call) ends."""

    def end(db):
        if status == "COMPLETED":
            calls_repo.transition(db, call_id, "ANSWERED")
        calls_repo.transition(db, call_id, status, end_reason=reason, sip_status_code=sip)
        row = calls_repo.get_any(db, call_id)
        sessions_repo.end(db, row["session_id"], reason=reason or "completed")

    store.write_sync(end)


async def _get(client, auth, cid: str) -> dict:
    resp = await client.get(f"/api/campaigns/{cid}", headers=auth("alice"))
    assert resp.status == 200, await resp.text()
    return await resp.json()


async def test_a_campaign_is_created_as_a_draft_and_bad_contacts_are_named_by_index(client, auth, settings):
    agent_id = await _agent(client, auth)
    made = await _campaign(
        client,
        auth,
        agent_id,
        n=3,
        schedule={"timezone": "Europe/Paris", "days": ["mon"], "start": "09:00", "end": "17:00"},
    )
    assert made["status"] == "draft" and made["progress"]["pending"] == 3 and made["costs"]["total_cost_nanos"] == 0
    before = table_snapshot(settings)
    body = {
        "name": "bad",
        "agent_id": agent_id,
        "contacts": [
            {"phone_number": NUMBERS[0]},
            {"phone_number": "+1415555"},  # too short for the US
            {"phone_number": "0612345678"},  # not E.164
            {"phone_number": NUMBERS[0]},  # a duplicate of [0]
        ],
    }
    detail = (await assert_error(await client.post("/api/campaigns", json=body, headers=auth("alice")), 422))["detail"]
    assert "contacts[1].phone_number" in detail and "contacts[2].phone_number" in detail
    assert "contacts[3].phone_number" in detail and "also contacts[0]" in detail and "contacts[0]." not in detail
    bad_zone = {
        **body,
        "contacts": [],
        "schedule": {"timezone": "Mars/Olympus", "days": ["mon"], "start": "09:00", "end": "17:00"},
    }
    detail = (await assert_error(await client.post("/api/campaigns", json=bad_zone, headers=auth("alice")), 422))[
        "detail"
    ]
    assert "Mars/Olympus" in detail
    assert table_snapshot(settings) == before
    bobs_agent = await _agent(client, auth, user="bob")
    before = table_snapshot(settings)
    foreign = {**body, "contacts": [], "agent_id": bobs_agent}
    detail = (await assert_error(await client.post("/api/campaigns", json=foreign, headers=auth("alice")), 422))[
        "detail"
    ]
    assert detail == f"body agent_id: agent {bobs_agent} not found"  # another tenant's agent is no agent
    assert table_snapshot(settings) == before
    # another tenant sees none of it
    await assert_error(await client.get(f"/api/campaigns/{made['id']}", headers=auth("mallory")), 404)
    await assert_error(await _act(client, auth, made["id"], "start", user="mallory"), 404)
    listed = await (await client.get("/api/campaigns", headers=auth("alice"))).json()
    assert [(c["name"], c["id"], c["status"]) for c in listed["campaigns"]] == [("spring", made["id"], "draft")]


async def test_the_state_machine_refuses_what_its_state_does_not_allow(client, auth):
    cid = (await _campaign(client, auth, await _agent(client, auth)))["id"]
    await assert_error(await _act(client, auth, cid, "pause"), 409)
    await assert_error(await _act(client, auth, cid, "resume"), 409)
    assert (await (await _act(client, auth, cid, "start")).json())["status"] == "running"
    await assert_error(await _act(client, auth, cid, "start"), 409)
    assert (await (await _act(client, auth, cid, "pause")).json())["status"] == "paused"
    assert (await (await _act(client, auth, cid, "resume")).json())["status"] == "running"
    assert (await (await _act(client, auth, cid, "cancel")).json())["status"] == "cancelled"
    await assert_error(await _act(client, auth, cid, "resume"), 409)
    assert (await _get(client, auth, cid))["progress"]["cancelled"] == 3


async def test_starting_without_an_outbound_trunk_is_refused_and_dials_nothing(client, auth, settings, store):
    from api.keys import SETTINGS

    cid = (await _campaign(client, auth, await _agent(client, auth)))["id"]
    client.app[SETTINGS] = settings.with_(sip_outbound_trunk_id="")
    try:
        body = await assert_error(await _act(client, auth, cid, "start"), 503)
    finally:
        client.app[SETTINGS] = settings
    assert "VOXARENA_SIP_OUTBOUND_TRUNK_ID" in body["detail"]
    assert (await _get(client, auth, cid))["status"] == "draft"
    assert db_rows(settings, "SELECT COUNT(*) AS n FROM outbound_calls")[0]["n"] == 0


async def test_at_most_max_concurrent_calls_are_in_flight_and_each_carries_its_variables(
    client, auth, store, dialer, settings
):
    cid = (await _campaign(client, auth, await _agent(client, auth), n=10, max_concurrent_calls=3))["id"]
    await _act(client, auth, cid, "start")
    peak, ended = 0, 0
    for _ in range(30):
        await dialer.tick()
        live = _live_calls(store, cid)
        peak = max(peak, len(live))
        assert len(live) <= 3
        if not live:
            break
        _end(store, live[0]["call_id"], "COMPLETED", "completed")
        ended += 1
    campaign = await _get(client, auth, cid)
    assert peak == 3 and ended == 10
    assert campaign["status"] == "completed" and campaign["progress"]["completed"] == 10
    rows = db_rows(
        settings,
        "SELECT s.context, s.campaign FROM sessions s JOIN campaign_attempts a ON a.session_id = s.id "
        "WHERE a.campaign_id = ? ORDER BY a.id",
        [cid],
    )
    assert [r["context"] for r in rows[:2]] == ['{"customer": "C0"}', '{"customer": "C1"}']
    assert {r["campaign"] for r in rows} == {"spring"}


async def test_busy_and_no_answer_are_retried_after_the_backoff_and_then_counted(client, auth, store, dialer, clock):
    cid = (
        await _campaign(
            client,
            auth,
            await _agent(client, auth),
            n=2,
            max_concurrent_calls=2,
            retry={"max_attempts": 2, "on": ["busy"], "backoff_seconds": 60},
        )
    )["id"]
    await _act(client, auth, cid, "start")
    await dialer.tick()
    first, second = _live_calls(store, cid)
    _end(store, first["call_id"], "FAILED", "busy", 486)
    _end(store, second["call_id"], "NO_ANSWER", "no_answer", 480)
    await dialer.tick()
    progress = (await _get(client, auth, cid))["progress"]
    assert (progress["retrying"], progress["no_answer"], progress["in_progress"]) == (1, 1, 0)  # busy retries
    clock.advance(59)
    await dialer.tick()
    assert _live_calls(store, cid) == []  # not before the backoff
    clock.advance(2)
    await dialer.tick()
    [again] = _live_calls(store, cid)
    assert again["phone_number"] == first["phone_number"]
    _end(store, again["call_id"], "FAILED", "busy", 486)
    await dialer.tick()
    campaign = await _get(client, auth, cid)
    assert campaign["status"] == "completed"
    assert (campaign["progress"]["busy"], campaign["progress"]["no_answer"]) == (1, 1)
    contacts = (await (await client.get(f"/api/campaigns/{cid}/contacts", headers=auth("alice"))).json())["contacts"]
    busy = next(c for c in contacts if c["phone_number"] == first["phone_number"])
    assert [(a["attempt"], a["status"], a["sip_status_code"]) for a in busy["attempts"]] == [
        (1, "busy", 486),
        (2, "busy", 486),
    ]


async def test_calls_start_only_inside_the_schedule_window(client, auth, store, dialer, clock):
    schedule = {"timezone": "Europe/Paris", "days": ["mon"], "start": "09:01", "end": "10:00"}
    cid = (await _campaign(client, auth, await _agent(client, auth), n=1, schedule=schedule))["id"]
    await _act(client, auth, cid, "start")
    await dialer.tick()  # 09:00 in Paris: a minute early
    assert _live_calls(store, cid) == []
    clock.advance(60)
    await dialer.tick()
    assert len(_live_calls(store, cid)) == 1


async def test_the_do_not_call_list_is_skipped_and_counted(client, auth, store, dialer):
    resp = await client.post("/api/do-not-call", json={"phone_numbers": [NUMBERS[1]]}, headers=auth("alice"))
    assert resp.status == 200 and (await resp.json())["added"] == 1
    cid = (await _campaign(client, auth, await _agent(client, auth), n=3, max_concurrent_calls=3))["id"]
    await _act(client, auth, cid, "start")
    await dialer.tick()
    assert sorted(c["phone_number"] for c in _live_calls(store, cid)) == [NUMBERS[0], NUMBERS[2]]
    assert (await _get(client, auth, cid))["progress"]["do_not_call"] == 1
    listed = await (await client.get("/api/do-not-call", headers=auth("mallory"))).json()
    assert listed["numbers"] == []  # the list is the tenant's own
    await assert_error(await client.delete(f"/api/do-not-call/{NUMBERS[1]}", headers=auth("mallory")), 404)
    assert (await client.delete(f"/api/do-not-call/{NUMBERS[1]}", headers=auth("alice"))).status == 200


async def test_the_circuit_breaker_pauses_the_campaign_and_says_why(client, auth, store, dialer):
    breaker = {"failure_ratio": 0.5, "window_seconds": 600, "min_calls": 2}
    cid = (
        await _campaign(client, auth, await _agent(client, auth), n=5, max_concurrent_calls=2, circuit_breaker=breaker)
    )["id"]
    await _act(client, auth, cid, "start")
    await dialer.tick()
    for call in _live_calls(store, cid):
        _end(store, call["call_id"], "FAILED", "sip_503", 503)
    await dialer.tick()
    campaign = await _get(client, auth, cid)
    assert (
        campaign["status"] == "paused" and "circuit breaker: 2 of the last 2 calls failed" in campaign["status_reason"]
    )
    await dialer.tick()
    assert _live_calls(store, cid) == []  # paused: nothing more is dialled


async def test_a_restart_mid_campaign_dials_no_contact_twice(client, auth, store, settings, clock):
    cid = (await _campaign(client, auth, await _agent(client, auth), n=4, max_concurrent_calls=2))["id"]
    await _act(client, auth, cid, "start")
    first = Dialer(store, client.app[LIVEKIT], settings, now=clock, pace_seconds=0)
    await first.tick()
    dialled = {c["phone_number"] for c in _live_calls(store, cid)}
    # a claim whose dial never happened (the process died between the two)
    campaign = store.read_sync(campaigns_repo.get_row, tenant_of("alice"), cid)
    orphan = store.write_sync(campaigns_repo.claim, campaign, 1, to_iso(clock()))
    assert len(orphan) == 1
    second = Dialer(store, client.app[LIVEKIT], settings, now=clock, pace_seconds=0)  # the restarted process
    for call in _live_calls(store, cid):
        _end(store, call["call_id"], "COMPLETED", "completed")
    clock.advance(61)  # the orphaned claim is given back after a minute
    for _ in range(10):
        await second.tick()
        for call in _live_calls(store, cid):
            _end(store, call["call_id"], "COMPLETED", "completed")
    rows = db_rows(settings, "SELECT phone_number FROM outbound_calls ORDER BY created_at")
    assert sorted(r["phone_number"] for r in rows) == sorted(NUMBERS[:4])  # each number dialled once
    assert dialled <= {r["phone_number"] for r in rows}
    assert (await _get(client, auth, cid))["progress"]["completed"] == 4


async def test_counts_and_costs_equal_the_ledger(client, auth, store, dialer, settings):
    cid = (await _campaign(client, auth, await _agent(client, auth), n=2, max_concurrent_calls=2))["id"]
    await _act(client, auth, cid, "start")
    await dialer.tick()
    a, b = _live_calls(store, cid)
    attempts = db_rows(settings, "SELECT call_id, session_id FROM campaign_attempts WHERE campaign_id = ?", [cid])
    sessions = {r["call_id"]: r["session_id"] for r in attempts}
    book, owner = PriceBook.load(), tenant_of("alice")
    events = [
        make_event(
            book,
            key=f"test/{call['call_id']}",
            owner_id=owner,
            session_id=sessions[call["call_id"]],
            agent_id=None,
            provider="gemini",
            model="gemini-2.5-flash",
            event_type="llm_tokens",
            token_kind="input",
            quantity=Decimal(tokens),
        )
        for call, tokens in ((a, 1_000), (b, 3_000))
    ]
    store.write_sync(ledger.record_events, [e.as_dict() for e in events])
    _end(store, a["call_id"], "COMPLETED", "completed")
    _end(store, b["call_id"], "FAILED", "busy", 486)
    analysis = {
        "summary": "s",
        "sentiment": "positive",
        "sentiment_score": 0.9,
        "topics": [],
        "outcome": "booked",
        "action_items": [],
    }
    store.write_sync(
        lambda db: sessions_repo.store_analysis(db, sessions[a["call_id"]], result=analysis, error=None, attempts=1)
    )
    await dialer.tick()
    costs = (await _get(client, auth, cid))["costs"]
    total = db_rows(
        settings,
        "SELECT SUM(total_cost_nanos) AS n FROM usage_events WHERE session_id IN "
        "(SELECT session_id FROM campaign_attempts WHERE campaign_id = ?)",
        [cid],
    )[0]["n"]
    assert costs["total_cost_nanos"] == total == sum(e.total_cost_nanos for e in events) > 0
    assert costs["by_outcome"] == {
        "busy": usd(events[1].total_cost_nanos),
        "completed": usd(events[0].total_cost_nanos),
    }
    assert costs["by_outcome_nanos"] == {"busy": events[1].total_cost_nanos, "completed": events[0].total_cost_nanos}
    assert (costs["successful_calls"], costs["cost_per_success"]) == (1, usd(total))
    assert costs["cost_per_success_nanos"] == total
    # the list carries each campaign's total: the same figure, with no campaign's calls counted in another's
    other = (await _campaign(client, auth, await _agent(client, auth), n=1, name="autumn"))["id"]
    listed = {
        c["id"]: c for c in (await (await client.get("/api/campaigns", headers=auth("alice"))).json())["campaigns"]
    }
    assert (listed[cid]["total_cost_nanos"], listed[cid]["total_cost"]) == (total, usd(total))
    assert (listed[other]["total_cost_nanos"], listed[other]["total_cost"]) == (0, 0.0)


async def test_contacts_can_be_added_from_a_csv_with_the_other_columns_as_variables(client, auth):
    cid = (await _campaign(client, auth, await _agent(client, auth), n=1))["id"]
    csv = f"phone_number,customer,plan\n{NUMBERS[5]},Ada,gold\n{NUMBERS[0]},Again,\n"
    resp = await client.post(
        f"/api/campaigns/{cid}/contacts", data=csv, headers={**auth("alice"), "Content-Type": "text/csv"}
    )
    assert resp.status == 200, await resp.text()
    assert await resp.json() == {"added": 1, "duplicates": 1}
    contacts = (await (await client.get(f"/api/campaigns/{cid}/contacts", headers=auth("alice"))).json())["contacts"]
    assert contacts[-1]["variables"] == {"customer": "Ada", "plan": "gold"}
    bad = await client.post(
        f"/api/campaigns/{cid}/contacts",
        data="number\n+14155550100\n",
        headers={**auth("alice"), "Content-Type": "text/csv"},
    )
    await assert_error(bad, 422)
    # an empty number and a bad one are named together, and nothing is added
    bad = await client.post(
        f"/api/campaigns/{cid}/contacts",
        data=f"phone_number,customer\n{NUMBERS[7]},Ok\n,Blank\n555,Short\n",
        headers={**auth("alice"), "Content-Type": "text/csv"},
    )
    body = await assert_error(bad, 422)
    assert (
        "contacts[1].phone_number '': missing" in body["detail"] and "contacts[2].phone_number '555'" in body["detail"]
    )
    contacts = (await (await client.get(f"/api/campaigns/{cid}/contacts", headers=auth("alice"))).json())["contacts"]
    assert NUMBERS[7] not in {c["phone_number"] for c in contacts}


async def test_a_paused_or_cancelled_campaigns_calls_in_flight_still_get_their_outcome(client, auth, store, dialer):
    agent_id = await _agent(client, auth)
    retry = {"max_attempts": 3, "on": ["busy"], "backoff_seconds": 30}
    paused = (await _campaign(client, auth, agent_id, n=2, name="paused", max_concurrent_calls=1, retry=retry))["id"]
    cancelled = (await _campaign(client, auth, agent_id, n=2, name="cancelled", max_concurrent_calls=1, retry=retry))[
        "id"
    ]
    for cid in (paused, cancelled):
        await _act(client, auth, cid, "start")
    await dialer.tick()
    [p_call], [c_call] = _live_calls(store, paused), _live_calls(store, cancelled)
    await _act(client, auth, paused, "pause")
    await _act(client, auth, cancelled, "cancel")
    _end(store, p_call["call_id"], "COMPLETED", "completed")
    _end(store, c_call["call_id"], "FAILED", "busy", 486)
    await dialer.tick()
    p, c = await _get(client, auth, paused), await _get(client, auth, cancelled)
    assert p["status"] == "paused" and (p["progress"]["completed"], p["progress"]["pending"]) == (1, 1)
    # cancelled: the busy call is counted, not retried; the contact never called is cancelled
    assert c["status"] == "cancelled" and (c["progress"]["busy"], c["progress"]["cancelled"]) == (1, 1)
    assert c["progress"]["retrying"] == 0 and _live_calls(store, paused) == _live_calls(store, cancelled) == []


def _events(settings, cid: str) -> list[tuple[str, str, dict]]:
    import json

    return [
        (r["type"], r["owner_id"], json.loads(r["payload"]))
        for r in db_rows(
            settings, "SELECT type, owner_id, payload FROM live_events WHERE call_sid = ? ORDER BY id", [cid]
        )
    ]


async def test_every_change_of_a_campaign_is_a_live_event_of_its_tenant(client, auth, store, dialer, settings):
    cid = (await _campaign(client, auth, await _agent(client, auth), n=2, max_concurrent_calls=1))["id"]
    assert (await _act(client, auth, cid, "start")).status == 200
    await dialer.tick()  # the first contact dialled
    assert (await _act(client, auth, cid, "pause")).status == 200
    assert (await _act(client, auth, cid, "resume")).status == 200
    [live] = _live_calls(store, cid)
    _end(store, live["call_id"], "COMPLETED", "completed")
    await dialer.tick()  # the first settled, the second dialled
    [live] = _live_calls(store, cid)
    _end(store, live["call_id"], "FAILED", "busy", 486)
    await dialer.tick()  # the second settled: nothing left
    events = _events(settings, cid)
    assert {owner for _, owner, _ in events} == {tenant_of("alice")}
    assert [(kind, e["status"]) for kind, _, e in events] == [
        ("campaign.progress", "running"),  # started
        ("campaign.progress", "running"),  # a call started
        ("campaign.progress", "paused"),
        ("campaign.progress", "running"),  # resumed
        ("campaign.progress", "running"),  # one ended, the next started
        ("campaign.completed", "completed"),  # the last ended: nothing left
    ]
    first, last = events[1][2], events[-1][2]
    assert (first["campaign_id"], first["name"], first["progress"]["in_progress"]) == (cid, "spring", 1)
    assert (last["progress"]["completed"], last["progress"]["busy"], last["progress"]["pending"]) == (1, 1, 0)


async def test_the_tenants_concurrent_call_limit_caps_the_campaign(client, auth, store, dialer):
    store.write_sync(
        lambda db: tenants_repo.update(db, tenants_repo.ensure_personal(db, "alice")["id"], {"max_concurrent_calls": 2})
    )
    cid = (await _campaign(client, auth, await _agent(client, auth), n=5, max_concurrent_calls=5))["id"]
    await _act(client, auth, cid, "start")
    await dialer.tick()
    await dialer.tick()
    live = _live_calls(store, cid)
    assert len(live) == 2  # the campaign allows 5, the tenant 2
    progress = (await _get(client, auth, cid))["progress"]
    assert (progress["in_progress"], progress["pending"]) == (2, 3)  # the others wait, none failed
    _end(store, live[0]["call_id"], "COMPLETED", "completed")
    await dialer.tick()
    assert len(_live_calls(store, cid)) == 2  # the freed place is taken, no more


async def test_a_full_worker_holds_the_rest_of_a_round_back_as_the_calls_start(client, auth, store, settings, clock):
    # a worker that takes 2 calls: the round's capacity is asked before each dial, not once for all it claimed (a
    # dispatch the worker refuses is dropped by LiveKit, leaving the call ringing with nobody to dial it)
    cid = (await _campaign(client, auth, await _agent(client, auth), n=5, max_concurrent_calls=5))["id"]

    async def capacity() -> str | None:
        live = len(_live_calls(store, cid))
        return None if live < 2 else f"{live} calls running or starting, the most this worker takes is 2"

    dialer = Dialer(store, client.app[LIVEKIT], settings, capacity=capacity, now=clock, pace_seconds=0)
    await _act(client, auth, cid, "start")
    assert await dialer.tick() == 2
    live = _live_calls(store, cid)
    assert len(live) == 2
    progress = (await _get(client, auth, cid))["progress"]
    assert (progress["in_progress"], progress["pending"], progress["failed"]) == (2, 3, 0)  # the rest wait
    assert len(db_rows(settings, "SELECT id FROM campaign_attempts WHERE campaign_id = ?", [cid])) == 2
    _end(store, live[0]["call_id"], "COMPLETED", "completed")
    assert await dialer.tick() == 1  # the freed place is taken in the next round
    assert len(_live_calls(store, cid)) == 2


async def test_the_event_stream_follows_one_campaign_of_the_tenant(client, auth):
    from tests.api.test_events import events_until, upgrade_headers

    cid = (await _campaign(client, auth, await _agent(client, auth), n=2))["id"]
    await assert_error(
        await client.get(f"/events/ws?call_sid={cid}", headers={**auth("bob"), **upgrade_headers()}), 404
    )
    ws = await client.ws_connect(f"/events/ws?call_sid={cid}", headers=auth("alice"))
    try:
        await _act(client, auth, cid, "start")
        await _act(client, auth, cid, "cancel")
        got = await events_until(ws, "campaign.progress")
        assert (got[-1]["call_sid"], got[-1]["status"]) == (cid, "running")
        got = await events_until(ws, "campaign.progress")
        assert got[-1]["status"] == "cancelled" and got[-1]["progress"]["cancelled"] == 2
    finally:
        await ws.close()


async def test_a_campaign_not_running_can_be_deleted_with_its_contacts(client, auth, settings):
    agent_id = await _agent(client, auth)
    cid = (await _campaign(client, auth, agent_id, n=3))["id"]
    await assert_error(await client.delete(f"/api/campaigns/{cid}", headers=auth("bob")), 404)
    await _act(client, auth, cid, "start")
    before = table_snapshot(settings)
    await assert_error(await client.delete(f"/api/campaigns/{cid}", headers=auth("alice")), 409)  # running
    assert table_snapshot(settings) == before
    await _act(client, auth, cid, "cancel")
    resp = await client.delete(f"/api/campaigns/{cid}", headers=auth("alice"))
    assert resp.status == 200, await resp.text()
    await assert_error(await client.get(f"/api/campaigns/{cid}", headers=auth("alice")), 404)
    assert db_rows(settings, "SELECT id FROM campaign_contacts WHERE campaign_id = ?", [cid]) == []
    # the name is free again
    assert (await _campaign(client, auth, agent_id, n=1))["name"] == "spring"
