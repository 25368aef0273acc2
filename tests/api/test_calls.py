"""Outbound calls through the API: both of 001's shapes, statuses as the dialling job reports them, hanging up,
limits, and callbacks (signed, in order, retried, every attempt listed, private URLs refused). The SIP tier places
the same calls through real livekit-sip and sipp."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import time

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from livekit import api as lk
from livekit.protocol import agent_dispatch as proto_dispatch

from core.store import calls as calls_repo
from tests.api.seed import AGENT_WIRE
from tests.conftest import assert_error, table_snapshot
from worker.outbound import classify

PHONE = "+15551234567"


@pytest.fixture
def settings(settings):
    return settings.with_(
        sip_outbound_trunk_id="ST_test",
        outbound_http_allowed_hosts=("127.0.0.1",),
        callback_backoff_seconds=0.05,
        callback_max_attempts=4,
        admin_users=("root",),
    )


class Receiver:
    """A callback endpoint on loopback that fails its first `fail_first` requests."""

    def __init__(self, fail_first: int = 0) -> None:
        self.fail_first = fail_first
        self.requests: list[tuple[dict, str, bytes]] = []
        self.server: TestServer | None = None

    async def start(self) -> str:
        async def hook(request: web.Request) -> web.Response:
            body = await request.read()
            self.requests.append((json.loads(body), request.headers["X-Voxarena-Signature"], body))
            if len(self.requests) <= self.fail_first:
                return web.Response(status=500)
            return web.Response(status=204)

        app = web.Application()
        app.router.add_post("/hook", hook)
        self.server = TestServer(app, host="127.0.0.1")
        await self.server.start_server()
        return str(self.server.make_url("/hook"))


async def _until(what: str, check, timeout: float = 20.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = await check()
        if result:
            return result
        await asyncio.sleep(0.05)
    raise AssertionError(f"{what} not reached in {timeout}s")


def _verify(secret: str, header: str, body: bytes) -> bool:
    parts = dict(p.split("=", 1) for p in header.split(","))
    expected = hmac.new(secret.encode(), f"{parts['t']}.".encode() + body, hashlib.sha256).hexdigest()
    return hmac.compare_digest(expected, parts["v1"]) and abs(time.time() - int(parts["t"])) < 300


async def _agent(client, h, **kw) -> str:
    return (await (await client.post("/api/agents", json={**AGENT_WIRE, **kw}, headers=h)).json())["id"]


async def test_a_call_is_placed_dispatched_and_shown_in_both_shapes(client, auth, twirp_stub):
    _, calls = twirp_stub
    h = auth("alice")
    agent_id = await _agent(client, h)
    resp = await client.post("/api/calls/outbound", json={"agent_id": agent_id, "phone_number": PHONE}, headers=h)
    assert resp.status == 201, await resp.text()
    placed = await resp.json()
    assert placed["status"] == "RINGING" and placed["room_name"].startswith("vx-out-")
    ((_name, raw),) = calls
    req = proto_dispatch.CreateAgentDispatchRequest()
    req.ParseFromString(raw)
    meta = json.loads(req.metadata)
    assert (meta["direction"], meta["phone_number"], meta["call_id"]) == ("outbound", PHONE, placed["call_id"])
    status = await (await client.get(f"/api/calls/{placed['call_id']}/status", headers=h)).json()
    assert {
        k: status[k]
        for k in (
            "status",
            "call_status",
            "call_direction",
            "outbound_phone_number",
            "room_name",
            "ended_at",
            "duration",
        )
    } == {
        "status": "RINGING",
        "call_status": "RINGING",
        "call_direction": "OUTBOUND",
        "outbound_phone_number": PHONE,
        "room_name": placed["room_name"],
        "ended_at": None,
        "duration": None,
    }
    tel = await (await client.get(f"/api/telephony/outbound/call/{placed['call_id']}/status", headers=h)).json()
    assert tel == {
        "call_id": placed["call_id"],
        "status": "ringing",
        "duration": None,
        "phone_number": PHONE,
        "end_reason": None,
        "sip_status_code": None,
    }
    second = await client.post(
        "/api/telephony/outbound/call", json={"agent_id": agent_id, "phone_number": PHONE}, headers=h
    )
    assert second.status == 201 and (await second.json())["status"] == "ringing"
    await assert_error(await client.get(f"/api/calls/{placed['call_id']}/status", headers=auth("bob")), 404)


async def test_statuses_the_job_reports_show_everywhere(client, auth, store):
    h = auth("alice")
    agent_id = await _agent(client, h)
    answered = await (
        await client.post("/api/calls/outbound", json={"agent_id": agent_id, "phone_number": PHONE}, headers=h)
    ).json()
    busy = await (
        await client.post("/api/calls/outbound", json={"agent_id": agent_id, "phone_number": PHONE}, headers=h)
    ).json()
    store.write_sync(calls_repo.transition, answered["call_id"], "ANSWERED")
    store.write_sync(lambda db: calls_repo.transition(db, answered["call_id"], "COMPLETED", end_reason="hangup"))
    outcome = classify(
        lk.TwirpError(
            "resource_exhausted", "busy", status=429, metadata={"sip_status_code": "486", "sip_status": "Busy Here"}
        ),
        ring_timeout=30,
    )
    store.write_sync(
        lambda db: calls_repo.transition(
            db, busy["call_id"], outcome.status, end_reason=outcome.end_reason, sip_status_code=outcome.sip_status_code
        )
    )
    # a terminal status never moves again
    assert store.write_sync(calls_repo.transition, busy["call_id"], "ANSWERED") is False
    done = await (await client.get(f"/api/calls/{answered['call_id']}/status", headers=h)).json()
    assert (done["call_status"], done["end_reason"], done["duration"] >= 0) == ("COMPLETED", "hangup", True)
    failed = await (await client.get(f"/api/telephony/outbound/call/{busy['call_id']}/status", headers=h)).json()
    assert (failed["status"], failed["end_reason"], failed["sip_status_code"]) == ("failed", "busy", 486)
    session = await (await client.get(f"/api/sessions/{busy['session_id']}", headers=h)).json()
    assert (
        session["direction"],
        session["call_direction"],
        session["outbound_phone_number"],
        session["call_status"],
    ) == ("outbound", "OUTBOUND", PHONE, "FAILED")


def test_sip_outcomes_map_to_statuses_never_to_a_retry():
    def outcome(code, twirp="unknown", status=500):
        meta = {"sip_status_code": str(code)} if code else {}
        o = classify(lk.TwirpError(twirp, "x", status=status, metadata=meta), ring_timeout=30)
        return o.status, o.end_reason, o.sip_status_code

    assert outcome(486, "resource_exhausted", 429) == ("FAILED", "busy", 486)
    assert outcome(603) == ("FAILED", "declined", 603)
    assert outcome(None, "canceled", 408) == ("NO_ANSWER", "no_answer", None)
    assert outcome(480) == ("NO_ANSWER", "no_answer", 480)
    assert outcome(404) == ("FAILED", "sip_404", 404)
    assert classify(RuntimeError("boom"), ring_timeout=30).status == "FAILED"


async def test_callbacks_are_signed_in_order_retried_and_every_attempt_is_listed(client, auth, store):
    receiver = Receiver(fail_first=2)
    url = await receiver.start()
    try:
        h = auth("alice")
        agent_id = await _agent(client, h)
        placed = await (
            await client.post(
                "/api/calls/outbound",
                headers=h,
                json={"agent_id": agent_id, "phone_number": PHONE, "callback_url": url},
            )
        ).json()
        store.write_sync(calls_repo.transition, placed["call_id"], "ANSWERED")
        store.write_sync(lambda db: calls_repo.transition(db, placed["call_id"], "COMPLETED", end_reason="hangup"))

        async def delivered():
            rows = await (await client.get(f"/api/calls/{placed['call_id']}/callbacks", headers=h)).json()
            return rows if sum(r["delivered"] for r in rows) == 3 else None

        rows = await _until("three delivered callbacks", delivered)
        assert [(r["event_status"], r["attempt"], r["delivered"]) for r in rows] == [
            ("RINGING", 1, False),
            ("RINGING", 2, False),
            ("RINGING", 3, True),
            ("ANSWERED", 1, True),
            ("COMPLETED", 1, True),
        ]
        secret = (await (await client.get("/api/calls/callback-secret", headers=h)).json())["secret"]
        seen = [(payload["call_status"], _verify(secret, sig, body)) for payload, sig, body in receiver.requests]
        assert seen == [("RINGING", True)] * 3 + [("ANSWERED", True), ("COMPLETED", True)]
        last = receiver.requests[-1][0]
        assert (last["call_id"], last["status"], last["end_reason"]) == (placed["call_id"], "completed", "hangup")
        # a rotated secret signs what comes next; the old one no longer verifies
        rotated = (await (await client.post("/api/calls/callback-secret", headers=h)).json())["secret"]
        assert rotated != secret
    finally:
        await receiver.server.close()


async def test_private_callback_urls_are_refused_and_nothing_is_placed(client, auth, settings, twirp_stub):
    _, calls = twirp_stub
    h = auth("alice")
    agent_id = await _agent(client, h)
    before = table_snapshot(settings)
    for url in (
        "http://192.168.1.10/hook",
        "http://169.254.169.254/latest",
        "http://[::1]:9/x",
        "ftp://example.com/x",
        "http://10.0.0.7:8080/",
    ):
        resp = await client.post(
            "/api/calls/outbound", headers=h, json={"agent_id": agent_id, "phone_number": PHONE, "callback_url": url}
        )
        await assert_error(resp, 400)
    await assert_error(
        await client.post("/api/calls/outbound", headers=h, json={"agent_id": agent_id, "phone_number": "5551234"}), 422
    )
    assert table_snapshot(settings) == before and calls == []


async def test_ending_a_call_hangs_up_and_a_second_end_is_a_409(client, auth, twirp_stub):
    _, calls = twirp_stub
    h = auth("alice")
    agent_id = await _agent(client, h)
    placed = await (
        await client.post("/api/telephony/outbound/call", json={"agent_id": agent_id, "phone_number": PHONE}, headers=h)
    ).json()
    await assert_error(
        await client.post(f"/api/telephony/outbound/call/{placed['call_id']}/end", headers=auth("bob")), 404
    )
    resp = await client.post(f"/api/telephony/outbound/call/{placed['call_id']}/end", headers=h)
    assert resp.status == 200 and await resp.json() == {"success": True}
    assert [name for name, _ in calls][-2:] == ["RemoveParticipant", "DeleteRoom"]
    status = await (await client.get(f"/api/telephony/outbound/call/{placed['call_id']}/status", headers=h)).json()
    assert (status["status"], status["end_reason"], status["duration"]) == ("failed", "canceled", 0)
    await assert_error(await client.post(f"/api/calls/{placed['call_id']}/end", headers=h), 409)


async def test_limits_and_unavailable_agents_refuse_outbound_calls(client, auth, settings):
    h = auth("root")
    team = await (
        await client.post(
            "/tenants", json={"name": "t", "owner_user_id": "alice", "max_concurrent_calls": 1}, headers=h
        )
    ).json()
    alice = {**auth("alice"), "X-Tenant-ID": team["id"]}
    agent_id = await _agent(client, alice)
    first = await client.post("/api/calls/outbound", json={"agent_id": agent_id, "phone_number": PHONE}, headers=alice)
    assert first.status == 201
    before = table_snapshot(settings)
    second = await client.post("/api/calls/outbound", json={"agent_id": agent_id, "phone_number": PHONE}, headers=alice)
    await assert_error(second, 429, "concurrency_limit")
    assert table_snapshot(settings) == before
    disabled = await _agent(client, auth("alice"), enabled=False)
    await assert_error(
        await client.post(
            "/api/calls/outbound", json={"agent_id": disabled, "phone_number": PHONE}, headers=auth("alice")
        ),
        409,
    )


async def test_a_call_carries_its_campaign_or_its_agents_default(client, auth, store):
    h = auth("alice")
    plain = await _agent(client, h)
    outreach = await _agent(client, h, campaign="Ohio")
    assert (await (await client.get(f"/api/agents/{outreach}", headers=h)).json())["campaign"] == "Ohio"
    named = await (
        await client.post(
            "/api/calls/outbound", headers=h, json={"agent_id": plain, "phone_number": PHONE, "campaign": "Texas"}
        )
    ).json()
    default = await (
        await client.post("/api/telephony/outbound/call", headers=h, json={"agent_id": outreach, "phone_number": PHONE})
    ).json()
    phony = await (
        await client.post(f"/api/agents/{outreach}/call", headers=h, json={"to_number": PHONE, "campaign": "Iowa"})
    ).json()
    none = await (
        await client.post("/api/calls/outbound", headers=h, json={"agent_id": plain, "phone_number": PHONE})
    ).json()
    sessions = {}
    for sid in (named["session_id"], default["session_id"], phony["call_sid"], none["session_id"]):
        sessions[sid] = (await (await client.get(f"/api/sessions/{sid}", headers=h)).json())["campaign"]
    assert sessions[named["session_id"]] == "Texas" and sessions[default["session_id"]] == "Ohio"
    assert sessions[phony["call_sid"]] == "Iowa" and sessions[none["session_id"]] is None
    campaigns = await (await client.get("/api/campaigns", headers=h)).json()
    assert [c["name"] for c in campaigns["campaigns"]] == ["Iowa", "Ohio", "Texas"]
