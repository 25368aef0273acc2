"""Generated from the route table: every route naming an object answers another user's token with 404 and
changes nothing, for every method it serves (PATCH beside PUT) and with or without the trailing slash."""

from __future__ import annotations

from api.app import all_routes
from api.routing import path_params
from core.recordings import LocalRecordings, recording_key
from core.store import apikeys, calls, campaigns, clients, phone_numbers, sessions, tenants
from tests.api.seed import ANALYSIS, seed_call, tenant_of
from tests.conftest import assert_error, table_snapshot

SAMPLE_BODIES = {
    "ContactsIn": {"contacts": [{"phone_number": "+14155550100"}]},
    "AgentUpdate": {"name": "stolen", "systemPrompt": "pwned"},
    "AgentV1Update": {"name": "stolen", "enabled": False},
    "TenantUpdate": {"name": "stolen"},
    "MemberCreate": {"user_id": "mallory", "role": "owner"},
    "ClientUpdate": {"name": "stolen", "active": False},
    "AgentCallRequest": {"to_number": "+15550001111"},
    "ContextUpdate": {"context": {"stolen": True}},
    "AssignRequest": {"agent_id": "stolen"},
}


def owned_routes():
    return [r for r in all_routes() if r.owned_param]


def object_ids(store) -> dict[str, str]:
    agent_id, session_id = seed_call(store, "alice", analysis=ANALYSIS)
    key, _ = store.write_sync(apikeys.create, tenant_of("alice"), "ci", "alice")
    team = store.write_sync(lambda db: tenants.create(db, {"name": "Alice team"}, owner_user_id="alice"))
    client = store.write_sync(clients.create, tenant_of("alice"), {"id": "site", "name": "Site"})
    call = store.write_sync(
        lambda db: calls.create(
            db,
            tenant_of("alice"),
            call_id="call_alice",
            agent_id=agent_id,
            session_id=session_id,
            room_name="r",
            phone_number="+15550001111",
            callback_url=None,
        )
    )
    number = store.write_sync(
        lambda db: phone_numbers.create(
            db,
            tenant_of("alice"),
            phone_number="+15550002222",
            friendly_name=None,
            capabilities=["voice"],
            trunk_id="ST_alice",
        )
    )
    campaign = store.write_sync(
        campaigns.create, tenant_of("alice"), {"name": "spring", "agent_id": agent_id, "contacts": []}
    )
    return {
        "/api/campaigns/": campaign["id"],
        "/api/phone-numbers/": number["phone_number"],
        "/api/agents/": agent_id,
        "/api/v1/agents/": agent_id,
        "/api/sessions/": session_id,
        "/api/keys/": key["id"],
        "/tenants/": team["id"],
        "/api/v1/clients/": client["id"],
        "/api/calls/": call["id"],
        "/api/telephony/outbound/call/": call["id"],
        "/api/analytics/agents/": agent_id,
        "session": session_id,
    }


def _with_recording(store, settings, session_id: str) -> None:
    """The session has a recording, so its recording routes answer its owner with 200."""
    key = recording_key(tenant_of("alice"), session_id)
    LocalRecordings.in_data_dir(settings.data_dir).writing_path(key).write_bytes(b"OggS")
    store.write_sync(lambda db: sessions.start_recording(db, session_id, key))


def test_the_matrix_covers_routes():
    assert len(owned_routes()) >= 16


def test_every_route_naming_an_object_declares_what_it_is_or_why_not():
    for route in all_routes():
        if path_params(route.path):
            assert route.owns or route.unowned, f"{route.method} {route.path} declares neither owns= nor unowned="


async def test_someone_elses_object_is_404_for_every_owned_route(client, auth, store, settings):
    ids = object_ids(store)
    _with_recording(store, settings, ids["session"])
    before = table_snapshot(settings)
    tried = 0
    for route in owned_routes():
        # /api/calls/{call_sid}/... name sessions (Phony's call_sid), /api/calls/{id}/... outbound calls
        prefix = "session" if route.owns == "session" else next((p for p in ids if route.path.startswith(p)), None)
        assert prefix, f"no owned object known for {route.path}: add it to object_ids()"
        path = route.path.replace("{" + route.owned_param + "}", ids[prefix])
        for other in path_params(path):  # e.g. the member of a tenant
            path = path.replace("{" + other + "}", "alice")
        methods = [route.method] + (["PATCH"] if route.method == "PUT" else [])
        body = None
        if route.body is not None:
            assert route.body.__name__ in SAMPLE_BODIES, f"add a sample body for {route.body.__name__}"
            body = SAMPLE_BODIES[route.body.__name__]
        for method in methods:
            for p in (path, path + "/"):
                resp = await client.request(method, p, json=body, headers=auth("mallory"))
                payload = await assert_error(resp, 404, "not_found")
                assert ids[prefix] in payload["detail"] or "not found" in payload["detail"]
                tried += 1
                # the owner still sees it
                if method == "GET":
                    assert (await client.get(p, headers=auth("alice"))).status == 200
    assert tried >= 34
    assert table_snapshot(settings) == before
