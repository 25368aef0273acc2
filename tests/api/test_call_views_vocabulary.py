"""Phony's active view (003) speaks one status vocabulary for every call under way: `ringing` until a phone call
is answered, then `in-progress`, whether the call is inbound, outbound or a web call."""

from __future__ import annotations

import pytest

from core.store import calls as calls_repo
from core.store import sessions as sessions_repo
from tests.api.seed import AGENT_WIRE, seed_call, tenant_of

PHONE = "+15551234567"


@pytest.fixture
def settings(settings):
    return settings.with_(sip_outbound_trunk_id="ST_test")


async def test_answered_outbound_inbound_and_web_calls_are_all_in_progress(client, auth, store):
    h = auth("alice")
    agent = await (await client.post("/api/agents", json=AGENT_WIRE, headers=h)).json()
    placed = await (await client.post(f"/api/agents/{agent['id']}/call", json={"to_number": PHONE}, headers=h)).json()
    store.write_sync(lambda db: sessions_repo.mark_active(db, placed["call_sid"], job_id="j1"))
    ringing = {c["call_sid"]: c["status"] for c in await (await client.get("/api/calls/active", headers=h)).json()}
    assert ringing[placed["call_sid"]] == "ringing"
    store.write_sync(lambda db: calls_repo.transition(db, placed["call_id"], "ANSWERED"))
    _, web = seed_call(store, "alice", agent_id=agent["id"], ended_at=None)
    inbound = store.write_sync(
        lambda db: sessions_repo.create(
            db,
            owner_id=tenant_of("alice"),
            agent_id=agent["id"],
            direction="inbound",
            from_number="+15550001111",
            to_number=PHONE,
            status="active",
        )
    )
    active = {c["call_sid"]: c["status"] for c in await (await client.get("/api/calls/active", headers=h)).json()}
    assert active == {placed["call_sid"]: "in-progress", web: "in-progress", inbound: "in-progress"}
