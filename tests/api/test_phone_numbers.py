"""Phony's phone numbers (003): registered per tenant with their LiveKit inbound trunk and a dispatch rule that refuses
their calls, assigned to an agent (the rule dispatches it), released (the rule refuses again), unregistered; LiveKit
first and nothing stored when it fails."""

from __future__ import annotations

import json

import pytest
from livekit.protocol import sip as proto_sip

from core.store import phone_numbers as repo
from core.store.db import connect
from core.store.migrations import migrate
from tests.api.seed import AGENT_WIRE, tenant_of
from tests.api.twirp_stub import FAILING, SIP_OBJECTS
from tests.conftest import assert_error, product_dispatch, table_snapshot

NUMBER = "+15551234567"


async def _agent(client, headers, **over) -> str:
    resp = await client.post("/api/agents", json={**AGENT_WIRE, **over}, headers=headers)
    assert resp.status == 201, await resp.text()
    return (await resp.json())["id"]


async def _register(client, headers, number: str = NUMBER, **body) -> dict:
    resp = await client.post("/api/phone-numbers", json={"phone_number": number, **body}, headers=headers)
    assert resp.status == 201, await resp.text()
    return await resp.json()


def _refusal(number: dict) -> dict:
    return {
        "owner_id": number.get("owner_id", tenant_of("alice")),
        "direction": "inbound",
        "phone_number_id": number["id"],
        "refuse": "number_not_assigned",
    }


def _dispatched(rule) -> dict:
    """The metadata the rule dispatches the worker with (its signature and server aside)."""
    (dispatch,) = rule.room_config.agents
    return {k: v for k, v in json.loads(dispatch.metadata).items() if k not in ("sig", "livekit_key")}


def _sip(twirp_stub, name: str) -> list:
    """The SIP requests the stub received under `name`, parsed."""
    _, calls = twirp_stub
    types = {
        "CreateSIPInboundTrunk": proto_sip.CreateSIPInboundTrunkRequest,
        "CreateSIPDispatchRule": proto_sip.CreateSIPDispatchRuleRequest,
        "UpdateSIPDispatchRule": proto_sip.UpdateSIPDispatchRuleRequest,
        "DeleteSIPDispatchRule": proto_sip.DeleteSIPDispatchRuleRequest,
        "DeleteSIPTrunk": proto_sip.DeleteSIPTrunkRequest,
    }
    out = []
    for n, raw in calls:
        if n == name:
            req = types[name]()
            req.ParseFromString(raw)
            out.append(req)
    return out


@pytest.fixture
def settings(settings):
    return settings.with_(
        sip_inbound_allowed_addresses=("203.0.113.0/24",),
        sip_inbound_auth_username="carrier",
        sip_inbound_auth_password="s3cret-for-the-carrier",
    )


async def test_a_registered_number_has_its_own_inbound_trunk_a_refusing_rule_and_is_listed_available(
    client, auth, twirp_stub, settings
):
    h = auth("alice")
    made = await _register(client, h, friendly_name="Support Line", capabilities=["voice", "sms"])
    (create,) = _sip(twirp_stub, "CreateSIPInboundTrunk")
    assert list(create.trunk.numbers) == [NUMBER]
    assert (create.trunk.ringing_timeout.seconds, create.trunk.max_call_duration.seconds) == (30, 1800)
    assert list(create.trunk.allowed_addresses) == ["203.0.113.0/24"] and create.trunk.auth_username == "carrier"
    assert made["twilio_sid"].startswith("ST_") and made["twilio_sid"] in twirp_stub[0].app[SIP_OBJECTS]
    # its calls are refused until an agent is assigned: a rule (LiveKit would drop a call matching none) that
    # dispatches the worker with no agent
    (rule,) = [r.dispatch_rule for r in _sip(twirp_stub, "CreateSIPDispatchRule")]
    assert list(rule.trunk_ids) == [made["twilio_sid"]] and rule.rule.dispatch_rule_individual.room_prefix == "vx-in-"
    assert rule.room_config.agents[0].agent_name == settings.agent_name
    assert _dispatched(rule) == _refusal(made) == product_dispatch(settings, rule.room_config.agents[0].metadata)
    assert len(twirp_stub[0].app[SIP_OBJECTS]) == 2
    assert {k: made[k] for k in ("phone_number", "friendly_name", "capabilities", "status", "agent_id")} == {
        "phone_number": NUMBER,
        "friendly_name": "Support Line",
        "capabilities": ["voice", "sms"],
        "status": "available",
        "agent_id": None,
    }
    assert made["id"].startswith("pn_") and made["created_at"]
    plain = await _register(client, h, "+15557654321")
    assert plain["capabilities"] == ["voice"] and plain["friendly_name"] is None
    listed = await (await client.get("/api/phone-numbers/available", headers=h)).json()
    assert [n["phone_number"] for n in listed] == [NUMBER, "+15557654321"]
    assert set(listed[0]) >= {"phone_number", "twilio_sid", "friendly_name", "capabilities", "status"}
    assert await (await client.get("/api/phone-numbers/available", headers=auth("bob"))).json() == []


async def test_a_number_is_registered_once_across_tenants_and_bad_input_is_a_422(client, auth, twirp_stub, settings):
    await _register(client, auth("alice"))
    before = table_snapshot(settings)
    for who in ("alice", "bob"):
        await assert_error(
            await client.post("/api/phone-numbers", json={"phone_number": NUMBER}, headers=auth(who)), 409, "conflict"
        )
    assert len(_sip(twirp_stub, "CreateSIPInboundTrunk")) == 1  # a taken number never reaches LiveKit
    for bad in (
        {"phone_number": "5551234567"},
        {"phone_number": "+0123"},
        {},
        {"phone_number": 15551234567},
        {"phone_number": "+15550001111", "capabilities": []},
        {"phone_number": "+15550001111", "capabilities": ["telepathy"]},
    ):
        await assert_error(await client.post("/api/phone-numbers", json=bad, headers=auth("alice")), 422)
    assert table_snapshot(settings) == before
    await assert_error(await client.post("/api/phone-numbers", json={"phone_number": NUMBER}), 401)


async def test_nothing_is_stored_when_livekit_fails_and_a_failed_store_write_deletes_the_trunk_and_rule(
    client, auth, twirp_stub, settings, store, monkeypatch
):
    server, _ = twirp_stub
    h = auth("alice")
    before = table_snapshot(settings)
    server.app[FAILING]["CreateSIPInboundTrunk"] = "trunk quota reached"
    body = await assert_error(
        await client.post("/api/phone-numbers", json={"phone_number": NUMBER}, headers=h), 502, "upstream_error"
    )
    assert "trunk quota reached" in body["detail"]
    assert table_snapshot(settings) == before
    del server.app[FAILING]["CreateSIPInboundTrunk"]

    # the refusing rule cannot be made: the trunk just made is deleted again
    server.app[FAILING]["CreateSIPDispatchRule"] = "rules are down"
    body = await assert_error(
        await client.post("/api/phone-numbers", json={"phone_number": NUMBER}, headers=h), 502, "upstream_error"
    )
    assert "rules are down" in body["detail"]
    (deleted,) = _sip(twirp_stub, "DeleteSIPTrunk")
    assert deleted.sip_trunk_id and server.app[SIP_OBJECTS] == {}
    assert table_snapshot(settings) == before
    del server.app[FAILING]["CreateSIPDispatchRule"]

    # the store refuses the row (a race on the same number): the trunk just made is deleted again
    def refuse(*a, **kw):
        raise repo.ConflictError(f"phone number {NUMBER} is already registered")

    monkeypatch.setattr(repo, "create", refuse)
    await assert_error(await client.post("/api/phone-numbers", json={"phone_number": NUMBER}, headers=h), 409)
    assert len(_sip(twirp_stub, "CreateSIPInboundTrunk")) == 3  # the failed attempts, then the one undone
    assert len(_sip(twirp_stub, "DeleteSIPTrunk")) == 2 and len(_sip(twirp_stub, "DeleteSIPDispatchRule")) == 1
    assert server.app[SIP_OBJECTS] == {}
    assert table_snapshot(settings) == before


async def test_assigning_points_the_numbers_rule_at_the_agent_and_releasing_points_it_back_at_the_refusal(
    client, auth, twirp_stub, store, settings
):
    server, _ = twirp_stub
    h = auth("alice")
    agent = await _agent(client, h)
    made = await _register(client, h)
    row = store.read_sync(repo.get, tenant_of("alice"), NUMBER)
    rule_id = row["dispatch_rule_id"]
    assert rule_id in server.app[SIP_OBJECTS] and row["agent_id"] is None
    resp = await client.post("/api/phone-numbers/%2B15551234567/assign", json={"agent_id": agent}, headers=h)
    assert resp.status == 200, await resp.text()
    assert await resp.json() == {
        "message": "Phone number assigned successfully",
        "agent_id": agent,
        "phone_number": NUMBER,
    }
    (update,) = _sip(twirp_stub, "UpdateSIPDispatchRule")  # the refusing rule, now the agent's (in place)
    assert update.sip_dispatch_rule_id == rule_id
    rule = update.replace
    assert list(rule.trunk_ids) == [made["twilio_sid"]]
    assert rule.rule.dispatch_rule_individual.room_prefix == "vx-in-"
    assert rule.room_config.agents[0].agent_name == settings.agent_name
    assert _dispatched(rule) == {
        "agent_id": agent,
        "owner_id": tenant_of("alice"),
        "direction": "inbound",
        "phone_number_id": made["id"],
    }
    assert _dispatched(server.app[SIP_OBJECTS][rule_id]) == _dispatched(rule)
    (listed,) = await (await client.get("/api/phone-numbers/available", headers=h)).json()
    assert (listed["status"], listed["agent_id"]) == ("assigned", agent)
    assert store.read_sync(repo.get, tenant_of("alice"), NUMBER)["dispatch_rule_id"] == rule_id

    # another agent: the same rule now dispatches it (never two rules for one trunk)
    other = await _agent(client, h, name="B")
    resp = await client.post(f"/api/phone-numbers/{NUMBER}/assign", json={"agent_id": other}, headers=h)  # a literal +
    assert resp.status == 200, await resp.text()
    _, update = _sip(twirp_stub, "UpdateSIPDispatchRule")
    assert update.sip_dispatch_rule_id == rule_id and _dispatched(update.replace)["agent_id"] == other
    assert len(_sip(twirp_stub, "CreateSIPDispatchRule")) == 1

    resp = await client.post("/api/phone-numbers/%2B15551234567/release", headers=h)
    assert resp.status == 200, await resp.text()
    assert (await resp.json())["message"] == "Phone number released successfully"
    *_, update = _sip(twirp_stub, "UpdateSIPDispatchRule")  # the rule refuses again; it is not deleted
    assert update.sip_dispatch_rule_id == rule_id and _dispatched(update.replace) == _refusal(made)
    assert _sip(twirp_stub, "DeleteSIPDispatchRule") == []
    (listed,) = await (await client.get("/api/phone-numbers/available", headers=h)).json()
    assert (listed["status"], listed["agent_id"]) == ("available", None)
    assert set(server.app[SIP_OBJECTS]) == {made["twilio_sid"], rule_id}
    assert _dispatched(server.app[SIP_OBJECTS][rule_id]) == _refusal(made)
    assert store.read_sync(repo.get, tenant_of("alice"), NUMBER)["dispatch_rule_id"] == rule_id

    # unregistering deletes the trunk and its rule, assigned or not
    await client.post("/api/phone-numbers/%2B15551234567/assign", json={"agent_id": agent}, headers=h)
    resp = await client.delete("/api/phone-numbers/%2B15551234567", headers=h)
    assert resp.status == 200 and (await resp.json())["success"] is True, await resp.text()
    assert [d.sip_dispatch_rule_id for d in _sip(twirp_stub, "DeleteSIPDispatchRule")] == [rule_id]
    assert server.app[SIP_OBJECTS] == {}
    assert await (await client.get("/api/phone-numbers/available", headers=h)).json() == []
    await assert_error(await client.post("/api/phone-numbers/%2B15551234567/release", headers=h), 404)
    await _register(client, h, "+15557654321")  # never assigned: its refusing rule goes with it
    assert len(server.app[SIP_OBJECTS]) == 2
    resp = await client.delete("/api/phone-numbers/%2B15557654321", headers=h)
    assert resp.status == 200, await resp.text()
    assert server.app[SIP_OBJECTS] == {}


async def test_unknown_numbers_other_tenants_and_unavailable_agents_are_refused(client, auth, twirp_stub, settings):
    alice, bob = auth("alice"), auth("bob")
    agent = await _agent(client, alice)
    disabled = await _agent(client, alice, name="Off", enabled=False)
    inactive = await _agent(client, alice, name="Idle", status="inactive")
    bobs_agent = await _agent(client, bob, name="Bob's")
    await _register(client, alice)
    before = table_snapshot(settings)
    path = "/api/phone-numbers/%2B15551234567"
    for method, suffix, body in (
        ("POST", "/assign", {"agent_id": agent}),
        ("POST", "/release", None),
        ("DELETE", "", None),
    ):
        await assert_error(await client.request(method, path + suffix, json=body, headers=bob), 404)
        await assert_error(
            await client.request(method, "/api/phone-numbers/%2B15550009999" + suffix, json=body, headers=alice), 404
        )
    await assert_error(await client.post(path + "/assign", json={"agent_id": bobs_agent}, headers=alice), 404)
    await assert_error(await client.post(path + "/assign", json={"agent_id": "nope"}, headers=alice), 404)
    for off in (disabled, inactive):
        await assert_error(await client.post(path + "/assign", json={"agent_id": off}, headers=alice), 409)
    await assert_error(await client.post(path + "/assign", json={}, headers=alice), 422)
    assert table_snapshot(settings) == before
    assert len(_sip(twirp_stub, "CreateSIPDispatchRule")) == 1  # the refusing rule made at registration, alone
    assert _sip(twirp_stub, "UpdateSIPDispatchRule") == [] and _sip(twirp_stub, "DeleteSIPTrunk") == []


async def test_a_livekit_failure_while_assigning_stores_nothing_and_a_failed_write_puts_the_refusal_back(
    client, auth, twirp_stub, settings, store, monkeypatch
):
    server, _ = twirp_stub
    h = auth("alice")
    agent = await _agent(client, h)
    made = await _register(client, h)
    rule_id = store.read_sync(repo.get, tenant_of("alice"), NUMBER)["dispatch_rule_id"]
    before = table_snapshot(settings)
    server.app[FAILING]["UpdateSIPDispatchRule"] = "rules are down"
    body = await assert_error(
        await client.post(f"/api/phone-numbers/{NUMBER}/assign", json={"agent_id": agent}, headers=h), 502
    )
    assert "rules are down" in body["detail"]
    assert table_snapshot(settings) == before
    del server.app[FAILING]["UpdateSIPDispatchRule"]

    def broken(*a, **kw):
        raise repo.NotFoundError(f"phone number {NUMBER} is not registered")  # e.g. unregistered meanwhile

    monkeypatch.setattr(repo, "assign", broken)
    await assert_error(
        await client.post(f"/api/phone-numbers/{NUMBER}/assign", json={"agent_id": agent}, headers=h), 404
    )
    # the failed attempt, the agent's rule, then the refusal put back on it
    *_, routed, undone = _sip(twirp_stub, "UpdateSIPDispatchRule")
    assert _dispatched(routed.replace)["agent_id"] == agent and _dispatched(undone.replace) == _refusal(made)
    assert set(server.app[SIP_OBJECTS]) == {made["twilio_sid"], rule_id}
    assert _dispatched(server.app[SIP_OBJECTS][rule_id]) == _refusal(made)
    assert _sip(twirp_stub, "DeleteSIPDispatchRule") == []
    assert table_snapshot(settings) == before

    monkeypatch.undo()
    assert (await client.post(f"/api/phone-numbers/{NUMBER}/assign", json={"agent_id": agent}, headers=h)).status == 200
    before = table_snapshot(settings)
    server.app[FAILING]["UpdateSIPDispatchRule"] = "still down"
    await assert_error(await client.post(f"/api/phone-numbers/{NUMBER}/release", headers=h), 502)
    assert _dispatched(server.app[SIP_OBJECTS][rule_id])["agent_id"] == agent  # still the agent's
    server.app[FAILING]["DeleteSIPDispatchRule"] = "still down"
    await assert_error(await client.delete(f"/api/phone-numbers/{NUMBER}", headers=h), 502)
    assert table_snapshot(settings) == before


def test_the_migration_adds_the_numbers_table_and_the_sessions_numbers(tmp_path):
    db = connect(tmp_path / "v.db")
    migrate(db)
    assert {"from_number", "to_number", "phone_number_id"} <= set(db["sessions"].columns_dict)
    assert set(db["phone_numbers"].columns_dict) >= {
        "id",
        "owner_id",
        "phone_number",
        "trunk_id",
        "dispatch_rule_id",
        "agent_id",
    }


def test_the_carriers_credentials_go_together_and_its_addresses_are_a_list():
    from core.settings import Settings

    with pytest.raises(ValueError, match="SIP_INBOUND_AUTH"):
        Settings(sip_inbound_auth_username="carrier")
    s = Settings.from_env({"VOXARENA_SIP_INBOUND_ALLOWED_ADDRESSES": "203.0.113.7, 198.51.100.0/24"})
    assert s.sip_inbound_allowed_addresses == ("203.0.113.7", "198.51.100.0/24")
    assert "s3cret" not in repr(Settings(sip_inbound_auth_username="c", sip_inbound_auth_password="s3cret"))
