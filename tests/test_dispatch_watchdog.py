"""The dispatch watchdog against a LiveKit stub: a call whose job never starts is dispatched once more after the
timeout (counted from when the caller joined; for an outbound phone call, from its dispatch), then ends as
`no_agent_available` with its room closed; a call whose job starts meanwhile is left alone."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest
from livekit import api as lk
from livekit.protocol import agent_dispatch as proto_dispatch

from api.keys import DISPATCH_WATCHDOG, GATEWAYS
from api.services.dispatch import DispatchWatchdog
from core.store import sessions as repo
from core.store.timefmt import now_iso

AGENT = {"name": "Support", "systemPrompt": "Be brief."}
PHONE = "+15551234567"
CALLER, AGENT_KIND = int(lk.ParticipantInfo.Kind.STANDARD), int(lk.ParticipantInfo.Kind.AGENT)


async def _token(client, auth, room: str) -> str:
    h = auth("alice")
    agent_id = (await (await client.post("/api/agents", json=AGENT, headers=h)).json())["id"]
    resp = await client.post("/api/livekit/token", json={"agentId": agent_id, "roomName": room}, headers=h)
    assert resp.status == 200
    return (await resp.json())["sessionId"]


@pytest.fixture(autouse=True)
async def _alone(client) -> None:
    """These tests drive a watchdog of their own on a made-up clock: the app's, on the real clock, would record the
    caller's join at the real time between their passes."""
    await client.app[DISPATCH_WATCHDOG].stop()


def _names(calls) -> list[str]:
    return [name for name, _ in calls]


async def test_a_call_no_worker_takes_is_dispatched_once_more_then_ends_as_no_agent_available(
    client, auth, store, twirp_stub, livekit_rooms
):
    _, calls = twirp_stub
    sid = await _token(client, auth, "room-a")
    watchdog = DispatchWatchdog(store, client.app[GATEWAYS], timeout_seconds=10)
    t0 = datetime.now(UTC)
    # Nobody in the room yet: the timeout has not started, however long the token waits.
    assert await watchdog.check_once(t0 + timedelta(seconds=30)) == {"retried": 0, "given_up": 0}
    livekit_rooms["room-a"] = [CALLER]
    assert await watchdog.check_once(t0 + timedelta(seconds=31)) == {"retried": 0, "given_up": 0}
    assert await watchdog.check_once(t0 + timedelta(seconds=40)) == {"retried": 0, "given_up": 0}
    assert await watchdog.check_once(t0 + timedelta(seconds=42)) == {"retried": 1, "given_up": 0}
    assert _names(calls) == ["CreateDispatch", "DeleteDispatch", "CreateDispatch"]
    first, retry = proto_dispatch.CreateAgentDispatchRequest(), proto_dispatch.CreateAgentDispatchRequest()
    first.ParseFromString(calls[0][1])
    retry.ParseFromString(calls[2][1])
    assert retry.metadata == first.metadata and retry.room == "room-a"  # the same call, dispatched again
    row = store.read_sync(repo.get_row, sid)
    assert row["status"] == "pending" and row["dispatch_attempts"] == 2
    assert await watchdog.check_once(t0 + timedelta(seconds=50)) == {"retried": 0, "given_up": 0}
    assert await watchdog.check_once(t0 + timedelta(seconds=53)) == {"retried": 0, "given_up": 1}
    assert _names(calls)[3:] == ["DeleteDispatch", "DeleteRoom"]
    s = await (await client.get(f"/api/sessions/{sid}", headers=auth("alice"))).json()
    assert s["status"] == "ended" and s["endReason"] == "no_agent_available"
    assert "dispatched 2 times" in s["error"] and s["analysisStatus"] == "skipped" and s["analysis"] is None
    assert await (await client.get(f"/api/sessions/{sid}/analysis", headers=auth("alice"))).json() is None
    # done: nothing more happens to it
    assert await watchdog.check_once(t0 + timedelta(seconds=90)) == {"retried": 0, "given_up": 0}


async def test_a_call_whose_job_starts_is_left_alone(client, auth, store, twirp_stub, livekit_rooms):
    _, calls = twirp_stub
    sid = await _token(client, auth, "room-b")
    livekit_rooms["room-b"] = [CALLER, AGENT_KIND]
    watchdog = DispatchWatchdog(store, client.app[GATEWAYS], timeout_seconds=5)
    t0 = datetime.now(UTC)
    await watchdog.check_once(t0)
    store.write_sync(lambda db: repo.mark_active(db, sid, job_id="AJ_1", started_at=now_iso()))
    assert await watchdog.check_once(t0 + timedelta(seconds=60)) == {"retried": 0, "given_up": 0}
    assert _names(calls) == ["CreateDispatch"]
    assert store.read_sync(repo.get_row, sid)["status"] == "active"


async def test_an_agent_alone_in_the_room_is_not_a_waiting_caller(client, auth, store, twirp_stub, livekit_rooms):
    _, calls = twirp_stub
    await _token(client, auth, "room-c")
    livekit_rooms["room-c"] = [AGENT_KIND]
    watchdog = DispatchWatchdog(store, client.app[GATEWAYS], timeout_seconds=1)
    t0 = datetime.now(UTC)
    for s in (0, 5, 10):
        assert await watchdog.check_once(t0 + timedelta(seconds=s)) == {"retried": 0, "given_up": 0}
    assert _names(calls) == ["CreateDispatch"]


@pytest.fixture
def settings(settings):
    return settings.with_(sip_outbound_trunk_id="ST_test")


async def test_an_outbound_call_no_worker_takes_is_dispatched_again_then_fails_without_a_dial(
    client, auth, store, twirp_stub
):
    """Nobody is in an outbound call's room before its job dials: the wait counts from the dispatch."""
    _, calls = twirp_stub
    h = auth("alice")
    agent_id = (await (await client.post("/api/agents", json=AGENT, headers=h)).json())["id"]
    resp = await client.post("/api/calls/outbound", json={"agent_id": agent_id, "phone_number": PHONE}, headers=h)
    assert resp.status == 201, await resp.text()
    placed = await resp.json()
    watchdog = DispatchWatchdog(store, client.app[GATEWAYS], timeout_seconds=10)
    t0 = datetime.now(UTC)
    assert await watchdog.check_once(t0 + timedelta(seconds=5)) == {"retried": 0, "given_up": 0}
    assert await watchdog.check_once(t0 + timedelta(seconds=11)) == {"retried": 1, "given_up": 0}
    first, retry = proto_dispatch.CreateAgentDispatchRequest(), proto_dispatch.CreateAgentDispatchRequest()
    first.ParseFromString(calls[0][1])
    retry.ParseFromString(calls[-1][1])
    assert _names(calls) == ["CreateDispatch", "DeleteDispatch", "CreateDispatch"]
    # the same call, dispatched again: the job that takes it dials the same call id
    assert json.loads(retry.metadata)["call_id"] == placed["call_id"] == json.loads(first.metadata)["call_id"]
    assert retry.metadata == first.metadata
    assert await watchdog.check_once(t0 + timedelta(seconds=22)) == {"retried": 0, "given_up": 1}
    status = await (await client.get(f"/api/calls/{placed['call_id']}/status", headers=h)).json()
    assert status["call_status"] == "FAILED", status
    s = await (await client.get(f"/api/sessions/{placed['session_id']}", headers=h)).json()
    assert s["status"] == "ended" and s["endReason"] == "no_agent_available", s
    assert "the number was not dialled" in s["error"], s
