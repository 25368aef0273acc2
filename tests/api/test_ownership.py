"""Generated from the route table: every route naming an object answers another user's token with 404 and
changes nothing, for every method it serves (PATCH beside PUT) and with or without the trailing slash."""

from __future__ import annotations

from api.app import all_routes
from tests.api.seed import ANALYSIS, seed_call
from tests.conftest import assert_error, table_snapshot

SAMPLE_BODIES = {
    "AgentUpdate": {"name": "stolen", "systemPrompt": "pwned"},
}


def owned_routes():
    return [r for r in all_routes() if r.owned_param]


def object_ids(store) -> dict[str, str]:
    agent_id, session_id = seed_call(store, "alice", analysis=ANALYSIS)
    return {"/api/agents/": agent_id, "/api/sessions/": session_id}


def test_the_matrix_covers_routes():
    assert len(owned_routes()) >= 7


async def test_someone_elses_object_is_404_for_every_owned_route(client, auth, store, settings):
    ids = object_ids(store)
    before = table_snapshot(settings.database_path)
    tried = 0
    for route in owned_routes():
        prefix = next((p for p in ids if route.path.startswith(p)), None)
        assert prefix, f"no owned object known for {route.path}: add it to object_ids()"
        path = route.path.replace("{" + route.owned_param + "}", ids[prefix])
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
    assert tried >= 14
    assert table_snapshot(settings.database_path) == before
