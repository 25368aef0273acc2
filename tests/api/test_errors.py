from __future__ import annotations

from tests.conftest import assert_error, table_snapshot


async def test_malformed_json_is_a_400_and_writes_nothing(client, auth, settings):
    before = table_snapshot(settings)
    resp = await client.post(
        "/api/agents", data=b'{"name": "x",', headers={**auth("a"), "Content-Type": "application/json"}
    )
    await assert_error(resp, 400, "invalid_json")
    assert table_snapshot(settings) == before


async def test_wrong_types_and_non_objects_are_422(client, auth, settings):
    before = table_snapshot(settings)
    for body in (
        [1, 2],
        "name",
        {"name": 5, "systemPrompt": "x"},
        {"name": "x", "systemPrompt": ["x"]},
        {"name": "", "systemPrompt": "x"},
        {"name": "x"},
    ):
        await assert_error(await client.post("/api/agents", json=body, headers=auth("a")), 422, "validation_error")
    assert table_snapshot(settings) == before


async def test_oversize_body_is_a_413(client, auth, settings):
    before = table_snapshot(settings)
    big = {"name": "x", "systemPrompt": "y" * (settings.max_body_bytes + 10)}
    await assert_error(await client.post("/api/agents", json=big, headers=auth("a")), 413, "payload_too_large")
    assert table_snapshot(settings) == before


async def test_bad_query_parameters_are_422(client, auth):
    h = auth("a")
    for q in (
        "page=0",
        "page=abc",
        "limit=0",
        "limit=101",
        "limit=1.5",
        "direction=sideways",
        "start_date=yesterday",
        "start_date=2024-13-01",
        "end_date=2024-02-30",
        "start_date=2024-05-02&end_date=2024-05-01",
    ):
        await assert_error(await client.get(f"/api/sessions?{q}", headers=h), 422, "validation_error")


async def test_unknown_routes_and_methods_get_the_error_body(client, auth):
    await assert_error(await client.get("/api/nope", headers=auth("a")), 404)
    await assert_error(await client.get("/nope"), 404)
    await assert_error(await client.post("/api/dashboard/metrics", headers=auth("a")), 405, "method_not_allowed")


# One invalid input per 004 route (the route table marks them `seed_errors`): a value the models refuse.
NOV = "start=2025-11-01&end=2025-11-30"
SEED_BAD_INPUT = {
    "/api/metrics/summary": ("GET", f"?{NOV}&source=excel", None),
    "/api/metrics/timeseries": ("GET", f"?{NOV}&metric=weather", None),
    "/api/metrics/by-campaign": ("GET", f"?{NOV}&source=excel", None),
    "/api/metrics/cost-breakdown": ("GET", f"?{NOV}&workspace_id={'w' * 201}", None),
    "/api/metrics/step-breakdown": ("GET", f"?{NOV}&source=excel", None),
    "/api/sheets": ("GET", "?format=raw&offset=-1", None),
    "/api/ask": ("POST", "", {"question": ""}),
    "/api/cost-events": ("POST", "", [{"provider": 5}]),
    "/api/llm-usage": ("POST", "", [{"provider": 5}]),
    "/api/events": ("POST", "", [{"event_type": "teleported"}]),
}


async def test_004s_routes_answer_invalid_input_with_400_and_004s_keys_beside_the_usual_ones(client, auth):
    from api.app import all_routes

    seed = {r.path for r in all_routes() if r.seed_errors}
    takes_input = {r.path for r in all_routes() if r.seed_errors and (r.query or r.body or r.method == "POST")}
    assert takes_input == set(SEED_BAD_INPUT), "add an invalid input for every 004 route that takes one"
    for path, (method, query, body) in SEED_BAD_INPUT.items():
        resp = await client.request(method, path + query, json=body, headers=auth("a"))
        err = await assert_error(resp, 400)
        assert err["error"] == "Invalid request format" and err["details"] == err["detail"], path
    # the other seeds' routes keep 422, without 004's keys
    err = await assert_error(await client.get("/api/sessions?limit=0", headers=auth("a")), 422, "validation_error")
    assert "error" not in err and "details" not in err
    assert seed >= takes_input


def test_the_openapi_document_declares_no_422_on_004s_routes():
    from api import openapi
    from api.app import all_routes

    doc = openapi.build(all_routes(), version="test")
    for route in all_routes():
        codes = doc["paths"][route.path][route.method.lower()]["responses"]
        assert ("422" in codes) is (not route.seed_errors), route.path
