"""Which inbound phone calls a job takes (worker/inbound.py), decided on a real SQLite file: the tenant's
concurrent-call limit, the agent's state and the number's assignment. (The SIP tier runs the whole path.)"""

from __future__ import annotations

import json
from typing import ClassVar

import pytest

from api.schemas.agents import storage
from core.store import agents, phone_numbers, sessions, tenants
from core.store.db import connect
from core.store.migrations import migrate
from tests.api.seed import AGENT_WIRE
from tests.test_dispatch_meta import parse, sign
from worker.config import BadDispatch
from worker.inbound import _refusal


class Caller:  # what _refusal reads of the SIP participant: that there is one
    identity = "sip_+15559999999"
    attributes: ClassVar[dict[str, str]] = {"sip.phoneNumber": "+15559999999"}


@pytest.fixture
def db(tmp_path):
    db = connect(tmp_path / "voxarena.db")
    migrate(db)
    return db


def _setup(db, *, limit: int | None = None):
    tenant = tenants.create(db, {"name": "Acme", "max_concurrent_calls": limit})["id"]
    agent = agents.create(db, tenant, storage(AGENT_WIRE))
    number = phone_numbers.create(
        db, tenant, phone_number="+15551234567", friendly_name=None, capabilities=["voice"], trunk_id="ST_x"
    )
    number = phone_numbers.assign(db, tenant, number["phone_number"], agent_id=agent["id"], dispatch_rule_id="SDR_x")
    meta = parse(
        sign({"agent_id": agent["id"], "owner_id": tenant, "direction": "inbound", "phone_number_id": number["id"]})
    )
    return tenant, agents.get_row(db, tenant, agent["id"]), number, meta


def test_a_dispatch_from_a_numbers_rule_is_an_inbound_phone_call(db):
    _, _, _, meta = _setup(db)
    assert meta.inbound_phone and meta.session_id is None
    assert not parse(sign({"agent_id": "a", "session_id": "s"})).inbound_phone  # a web call


def test_the_rule_of_an_unassigned_number_dispatches_a_refusal_with_no_agent():
    meta = parse(
        sign({"owner_id": "t1", "direction": "inbound", "phone_number_id": "pn_1", "refuse": "number_not_assigned"})
    )
    assert (meta.refuse, meta.owner_id, meta.phone_number_id, meta.session_id) == (
        "number_not_assigned",
        "t1",
        "pn_1",
        None,
    )
    assert not meta.agent_id
    for bad in (
        '{"owner_id": "t1", "phone_number_id": "pn_1", "refuse": ""}',
        '{"owner_id": "t1", "refuse": "number_not_assigned"}',
        '{"agent_id": "a", "owner_id": "t1", "phone_number_id": "pn_1", "refuse": "number_not_assigned"}',
        '{"owner_id": "t1", "phone_number_id": "pn_1", "direction": "outbound", "refuse": "x"}',
    ):
        with pytest.raises(BadDispatch):
            parse(sign(json.loads(bad)))
    assert parse(sign({"agent_id": "a", "phone_number_id": "pn_1"})).refuse is None  # an agent's rule


def test_a_call_within_the_limit_to_the_agents_number_is_taken(db):
    _, agent, number, meta = _setup(db, limit=2)
    assert _refusal(db, meta, agent, number, Caller()) is None


def test_a_call_beyond_the_tenants_concurrent_call_limit_is_refused(db):
    tenant, agent, number, meta = _setup(db, limit=1)
    sessions.create(db, owner_id=tenant, agent_id=agent["id"], status="active")
    reason, error = _refusal(db, meta, agent, number, Caller())
    assert reason == "concurrency_limit" and "limit of 1 concurrent calls" in error


def test_an_unavailable_agent_or_a_moved_number_refuses_the_call(db):
    _tenant, agent, number, meta = _setup(db)
    assert _refusal(db, meta, {**agent, "enabled": 0}, number, Caller())[0] == "agent_disabled"
    assert _refusal(db, meta, {**agent, "status": "inactive"}, number, Caller())[0] == "agent_inactive"
    assert (
        _refusal(db, meta, {**agent, "deleted_at": "2026-01-01T00:00:00.000000Z"}, number, Caller())[0]
        == "agent_deleted"
    )
    assert _refusal(db, meta, agent, {**number, "agent_id": "someone-else"}, Caller())[0] == "number_not_assigned"
    assert _refusal(db, meta, agent, None, Caller())[0] == "number_not_assigned"
    assert _refusal(db, meta, agent, number, None)[0] == "caller_never_joined"
