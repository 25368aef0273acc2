from __future__ import annotations

from tests.conftest import assert_error, table_snapshot


async def test_malformed_json_is_a_400_and_writes_nothing(client, auth, settings):
    before = table_snapshot(settings.database_path)
    resp = await client.post("/api/agents", data=b'{"name": "x",', headers={**auth("a"), "Content-Type": "application/json"})
    await assert_error(resp, 400, "invalid_json")
    assert table_snapshot(settings.database_path) == before


async def test_wrong_types_and_non_objects_are_422(client, auth, settings):
    before = table_snapshot(settings.database_path)
    for body in ([1, 2], "name", {"name": 5, "systemPrompt": "x"}, {"name": "x", "systemPrompt": ["x"]},
                 {"name": "", "systemPrompt": "x"}, {"name": "x"}):
        await assert_error(await client.post("/api/agents", json=body, headers=auth("a")), 422, "validation_error")
    assert table_snapshot(settings.database_path) == before


async def test_oversize_body_is_a_413(client, auth, settings):
    before = table_snapshot(settings.database_path)
    big = {"name": "x", "systemPrompt": "y" * (settings.max_body_bytes + 10)}
    await assert_error(await client.post("/api/agents", json=big, headers=auth("a")), 413, "payload_too_large")
    assert table_snapshot(settings.database_path) == before


async def test_bad_query_parameters_are_422(client, auth):
    h = auth("a")
    for q in ("page=0", "page=abc", "limit=0", "limit=101", "limit=1.5", "direction=sideways",
              "start_date=yesterday", "start_date=2024-13-01", "end_date=2024-02-30",
              "start_date=2024-05-02&end_date=2024-05-01"):
        await assert_error(await client.get(f"/api/sessions?{q}", headers=h), 422, "validation_error")


async def test_unknown_routes_and_methods_get_the_error_body(client, auth):
    await assert_error(await client.get("/api/nope", headers=auth("a")), 404)
    await assert_error(await client.get("/nope"), 404)
    await assert_error(await client.post("/api/dashboard/metrics", headers=auth("a")), 405, "method_not_allowed")
