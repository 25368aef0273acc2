"""Phony's call views (003): an agent's call with its context, the calls in progress, the history with each call's
exact cost; all scoped to the tenant."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from decimal import Decimal

import pytest
from livekit.protocol import agent_dispatch as proto_dispatch
from livekit.protocol import room as proto_room

from core.store import sessions as sessions_repo
from core.store import usage as ledger
from pipelines.metering import make_event
from pipelines.pricing import PriceBook
from tests.api.seed import AGENT_WIRE, seed_call, tenant_of
from tests.conftest import assert_error

PHONE = "+15551234567"
CONTEXT = {"customer": "Ada", "order": "A-1042"}


@pytest.fixture
def settings(settings):
    return settings.with_(sip_outbound_trunk_id="ST_test")


async def test_an_agents_call_is_queued_with_its_context(client, auth, store, twirp_stub):
    _, calls = twirp_stub
    h = auth("alice")
    agent = await (await client.post("/api/agents", json=AGENT_WIRE, headers=h)).json()
    resp = await client.post(
        f"/api/agents/{agent['id']}/call", json={"to_number": PHONE, "context": CONTEXT}, headers=h
    )
    assert resp.status == 201, await resp.text()
    body = await resp.json()
    assert body["status"] == "queued" and PHONE in body["message"] and body["call_sid"]
    req = proto_dispatch.CreateAgentDispatchRequest()
    req.ParseFromString(calls[-1][1])
    assert json.loads(req.metadata)["session_id"] == body["call_sid"]
    row = store.read_sync(sessions_repo.get_row, body["call_sid"])
    assert json.loads(row["context"]) == CONTEXT and row["direction"] == "outbound"
    status = await (await client.get(f"/api/calls/{body['call_id']}/status", headers=h)).json()
    assert status["session_id"] == body["call_sid"] and status["call_status"] == "RINGING"
    await assert_error(
        await client.post(f"/api/agents/{agent['id']}/call", json={"to_number": PHONE}, headers=auth("bob")), 404
    )
    await assert_error(await client.post(f"/api/agents/{agent['id']}/call", json={"to_number": "12"}, headers=h), 422)


async def test_active_calls_and_history_with_exact_costs(client, auth, store):
    h = auth("alice")
    agent = await (await client.post("/api/agents", json=AGENT_WIRE, headers=h)).json()
    placed = await (
        await client.post(f"/api/agents/{agent['id']}/call", json={"to_number": PHONE, "context": CONTEXT}, headers=h)
    ).json()
    store.write_sync(lambda db: sessions_repo.mark_active(db, placed["call_sid"], job_id="j1"))
    _, web = seed_call(store, "alice", agent_id=agent["id"], started_at="2026-11-30T10:00:00.000000Z", ended_at=None)
    active = await (await client.get("/api/calls/active", headers=h)).json()
    by_sid = {c["call_sid"]: c for c in active}
    assert set(by_sid) == {placed["call_sid"], web}
    out = by_sid[placed["call_sid"]]
    assert (out["id"], out["to_number"], out["from_number"], out["direction"], out["status"], out["context"]) == (
        placed["call_sid"],
        PHONE,
        None,
        "outbound",
        "ringing",
        CONTEXT,
    )
    assert (by_sid[web]["to_number"], by_sid[web]["status"]) == (None, "in-progress")
    assert await (await client.get("/api/calls/active", headers=auth("bob"))).json() == []

    # ended calls, one with usage: its cost is the ledger's exact total
    ended = [
        seed_call(
            store,
            "alice",
            agent_id=agent["id"],
            started_at=f"2026-11-2{d}T10:00:00.000000Z",
            ended_at=f"2026-11-2{d}T10:01:00.000000Z",
        )[1]
        for d in range(1, 4)
    ]
    book = PriceBook.load()
    at = datetime(2026, 11, 21, 10, 0, 30, tzinfo=UTC)
    events = [
        make_event(
            book,
            key=f"k{i}",
            owner_id=tenant_of("alice"),
            session_id=ended[0],
            agent_id=agent["id"],
            provider="deepgram",
            model=None,
            event_type="stt_minutes",
            quantity=Decimal("0.333"),
            token_kind=None,
            at=at,
        ).as_dict()
        for i in range(3)
    ]
    store.write_sync(ledger.record_events, events)
    expected = sum(e["total_cost_nanos"] for e in events)
    history = await (await client.get("/api/calls/history?limit=2", headers=h)).json()
    assert (history["total"], history["limit"], history["offset"]) == (3, 2, 0)
    assert [c["call_sid"] for c in history["calls"]] == [ended[2], ended[1]]
    page2 = await (await client.get("/api/calls/history?limit=2&offset=2", headers=h)).json()
    (first,) = page2["calls"]
    assert first["call_sid"] == ended[0] and first["cost_nanos"] == expected and first["duration_seconds"] == 60
    assert first["status"] == "completed" and first["cost"] == pytest.approx(expected / 1e9)
    ranged = await (await client.get("/api/calls/history?start_date=2026-11-22&end_date=2026-11-22", headers=h)).json()
    assert [c["call_sid"] for c in ranged["calls"]] == [ended[1]]
    assert (await (await client.get("/api/calls/history?agent_id=nope", headers=h)).json())["total"] == 0
    assert (await (await client.get("/api/calls/history", headers=auth("bob"))).json())["total"] == 0
    await assert_error(await client.get("/api/calls/history?limit=0", headers=h), 422)


async def test_context_pushed_into_a_live_call_is_merged_stored_and_sent_to_its_job(client, auth, store, twirp_stub):
    _, calls = twirp_stub
    h = auth("alice")
    agent = await (await client.post("/api/agents", json=AGENT_WIRE, headers=h)).json()
    placed = await (
        await client.post(f"/api/agents/{agent['id']}/call", json={"to_number": PHONE, "context": CONTEXT}, headers=h)
    ).json()
    sid = placed["call_sid"]
    await assert_error(await client.put(f"/api/calls/{sid}/context", json={"context": {"x": 1}}, headers=h), 404)
    store.write_sync(lambda db: sessions_repo.mark_active(db, sid, job_id="j1"))
    resp = await client.put(f"/api/calls/{sid}/context", json={"context": {"order": None, "mood": "upset"}}, headers=h)
    assert resp.status == 200, await resp.text()
    assert await resp.json() == {
        "message": "Context updated",
        "call_sid": sid,
        "context": {"customer": "Ada", "mood": "upset"},
    }
    name, raw = calls[-1]
    req = proto_room.SendDataRequest()
    req.ParseFromString(raw)
    assert name == "SendData" and req.topic == "voxarena.control" and req.room.startswith("vx-out-")
    assert json.loads(req.data) == {"type": "context", "context": {"customer": "Ada", "mood": "upset"}}
    (live,) = await (await client.get("/api/calls/active", headers=h)).json()
    assert live["context"] == {"customer": "Ada", "mood": "upset"}
    await assert_error(
        await client.put(f"/api/calls/{sid}/context", json={"context": {"x": 1}}, headers=auth("bob")), 404
    )
    await assert_error(await client.put(f"/api/calls/{sid}/context", json={"context": "nope"}, headers=h), 422)


async def test_supervisor_controls_reach_the_live_call_and_nothing_else(client, auth, store, twirp_stub):
    _, calls = twirp_stub
    h = auth("alice")
    agent = await (await client.post("/api/agents", json=AGENT_WIRE, headers=h)).json()
    phone = await (await client.post(f"/api/agents/{agent['id']}/call", json={"to_number": PHONE}, headers=h)).json()
    _, web = seed_call(store, "alice", agent_id=agent["id"], started_at="2026-11-30T10:00:00.000000Z", ended_at=None)
    # not live yet, someone else's, malformed
    await assert_error(
        await client.post("/api/override/text", json={"call_sid": phone["call_sid"], "text": "hi"}, headers=h), 404
    )
    store.write_sync(lambda db: sessions_repo.mark_active(db, phone["call_sid"], job_id="j1"))
    for path, body in (
        ("/api/override/text", {"text": "hi"}),
        ("/api/override/dtmf", {"digit": "1"}),
        ("/api/override/transfer", {"target": "+15551111111"}),
        ("/api/override/end", {}),
    ):
        await assert_error(
            await client.post(path, json={"call_sid": phone["call_sid"], **body}, headers=auth("bob")), 404
        )
    await assert_error(
        await client.post("/api/override/dtmf", json={"call_sid": phone["call_sid"], "digit": "12"}, headers=h), 422
    )
    await assert_error(
        await client.post("/api/override/text", json={"call_sid": phone["call_sid"], "text": ""}, headers=h), 422
    )

    def sent() -> dict:
        name, raw = calls[-1]
        req = proto_room.SendDataRequest()
        req.ParseFromString(raw)
        assert name == "SendData" and req.topic == "voxarena.control"
        return json.loads(req.data)

    said = await client.post(
        "/api/override/text", json={"call_sid": phone["call_sid"], "text": "Please hold."}, headers=h
    )
    assert said.status == 200 and (await said.json())["success"] is True
    assert sent() == {"type": "say", "text": "Please hold."}
    for digit in ("5", "#", "D"):
        resp = await client.post("/api/override/dtmf", json={"call_sid": phone["call_sid"], "digit": digit}, headers=h)
        assert resp.status == 200 and sent() == {"type": "dtmf", "digit": digit}
    await assert_error(await client.post("/api/override/dtmf", json={"call_sid": web, "digit": "1"}, headers=h), 409)
    for target, wire in (
        ("+15551111111", "tel:+15551111111"),
        ("sip:desk@pbx.example.com", "sip:desk@pbx.example.com"),
    ):
        resp = await client.post(
            "/api/override/transfer", json={"call_sid": phone["call_sid"], "target": target}, headers=h
        )
        assert resp.status == 200, await resp.text()
        assert sent() == {"type": "transfer", "target": wire, "mode": "cold"}
    resp = await client.post(
        "/api/override/transfer",
        json={"call_sid": phone["call_sid"], "target": "+15551111111", "mode": "warm"},
        headers=h,
    )
    assert resp.status == 200, await resp.text()
    assert (await resp.json())["message"] == "Warm transfer to +15551111111"
    assert sent() == {"type": "transfer", "target": "tel:+15551111111", "mode": "warm"}
    # a warm transfer's SIP URI is dialled by the product's own SIP bridge: only a host the address policy allows
    before = len(calls)
    for private in ("sip:desk@10.0.0.5", "sip:x@169.254.169.254:5060", "sip:x@127.0.0.1", "sip:x@[::1]:5070"):
        detail = (
            await assert_error(
                await client.post(
                    "/api/override/transfer",
                    json={"call_sid": phone["call_sid"], "target": private, "mode": "warm"},
                    headers=h,
                ),
                422,
            )
        )["detail"]
        assert detail.startswith("body target: host") and "VOXARENA_SIP_TRANSFER_ALLOWED_HOSTS" in detail, detail
    assert len(calls) == before  # nothing sent to the call
    resp = await client.post(
        "/api/override/transfer",
        json={"call_sid": phone["call_sid"], "target": "sip:desk@93.184.216.34:5062", "mode": "warm"},
        headers=h,
    )
    assert resp.status == 200 and sent()["target"] == "sip:desk@93.184.216.34:5062"
    # a cold transfer's REFER asks the caller's side to call: its host is not dialled from here
    resp = await client.post(
        "/api/override/transfer", json={"call_sid": phone["call_sid"], "target": "sip:desk@10.0.0.5"}, headers=h
    )
    assert resp.status == 200, await resp.text()
    for mode in ("hot", "WARM", None, 1):
        await assert_error(
            await client.post(
                "/api/override/transfer",
                json={"call_sid": phone["call_sid"], "target": "+15551111111", "mode": mode},
                headers=h,
            ),
            422,
        )
    for bad in ("5551111111", "tel:+15551111111", "sip:nohost", "sip:a b@c", ""):
        await assert_error(
            await client.post("/api/override/transfer", json={"call_sid": phone["call_sid"], "target": bad}, headers=h),
            422,
        )
    await assert_error(
        await client.post("/api/override/transfer", json={"call_sid": web, "target": "+15551111111"}, headers=h), 409
    )

    ended = await client.post("/api/override/end", json={"call_sid": phone["call_sid"]}, headers=h)
    assert ended.status == 200, await ended.text()
    assert [n for n, _ in calls][-2:] == ["RemoveParticipant", "DeleteRoom"]
    status = await (await client.get(f"/api/calls/{phone['call_id']}/status", headers=h)).json()
    assert (status["call_status"], status["end_reason"]) == ("FAILED", "canceled")
    web_end = await client.post("/api/override/end", json={"call_sid": web}, headers=h)
    assert web_end.status == 200 and [n for n, _ in calls][-1] == "DeleteRoom"
