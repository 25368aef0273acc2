"""Hostile JSON: bodies and socket frames nested deeper than the fixed limit are refused with the one error body
before anything parses or stores them (generated over every route that takes a body), and rows stored before the
limit existed never take down a list."""

from __future__ import annotations

import json
import logging

from api.app import all_routes
from api.routing import path_params
from core.jsondepth import MAX_DEPTH, too_deep
from core.store import sessions as sessions_repo
from tests.api.seed import AGENT_WIRE, seed_agent, seed_call, tenant_of
from tests.api.test_ownership import object_ids
from tests.conftest import assert_error, table_snapshot


def nested_object(depth: int) -> bytes:
    """An object ``depth`` levels deep (the body itself is level 1)."""
    return b'{"a":' * depth + b"1" + b"}" * depth


def nested_array(depth: int) -> bytes:
    return b"[" * depth + b"]" * depth


# What the attack run sent: 30-200 KB of nesting, balanced or not.
DEEP_BODIES = [nested_object(40_000), b"[" * 30_000, nested_array(MAX_DEPTH + 1)]


def routes_with_a_body():
    return [r for r in all_routes() if r.method in ("POST", "PUT", "DELETE")]


def test_the_depth_scan_counts_levels_outside_strings_only():
    assert not too_deep(nested_array(MAX_DEPTH)) and too_deep(nested_array(MAX_DEPTH + 1))
    assert not too_deep(json.dumps({"s": "[" * 1000, "t": '\\"{' * 500}).encode())
    assert not too_deep(b"[]" * 10_000)
    assert not too_deep(b"]" + b"[" * 100)  # the parser refuses it at the first byte
    assert too_deep("[" * 40)


async def test_every_route_taking_a_body_refuses_deep_json_with_400_and_writes_nothing(
    client, auth, store, settings, caplog
):
    ids = object_ids(store)
    before = table_snapshot(settings)
    seed_routes = {(r.method, r.path) for r in all_routes() if r.seed_errors}
    tried = 0
    with caplog.at_level(logging.ERROR):
        for route in routes_with_a_body():
            path = route.path
            if route.owned_param:
                prefix = "session" if route.owns == "session" else next(p for p in ids if path.startswith(p))
                path = path.replace("{" + route.owned_param + "}", ids[prefix])
            for other in path_params(path):
                path = path.replace("{" + other + "}", "alice")
            for method in [route.method] + (["PATCH"] if route.method == "PUT" else []):
                for body in DEEP_BODIES:
                    resp = await client.request(
                        method, path, data=body, headers={**auth("alice"), "Content-Type": "application/json"}
                    )
                    err = await assert_error(resp, 400, "json_too_deep")
                    assert str(MAX_DEPTH) in err["detail"], (method, path)
                    if (method, route.path) in seed_routes:  # 004's shape on 004's routes
                        assert err["error"] == "Invalid request format" and err["details"] == err["detail"]
                    tried += 1
    assert tried >= 3 * 40
    assert table_snapshot(settings) == before
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR], "a deep body reached a parser"


async def test_the_public_login_route_refuses_deep_json_without_credentials(client):
    for body in DEEP_BODIES:
        resp = await client.post("/api/v1/auth/login", data=body, headers={"Content-Type": "application/json"})
        await assert_error(resp, 400, "json_too_deep")


async def test_a_body_at_the_limit_is_accepted_and_one_level_more_is_not(client, auth, settings):
    h = auth("alice")

    def context(levels: int):  # the body {"contextData": ...} adds one level
        value: object = 1
        for _ in range(levels):
            value = {"k": value}
        return value

    ok = await client.post("/api/agents", json={**AGENT_WIRE, "contextData": context(MAX_DEPTH - 1)}, headers=h)
    assert ok.status == 201, await ok.text()
    before = table_snapshot(settings)
    await assert_error(
        await client.post("/api/agents", json={**AGENT_WIRE, "contextData": context(MAX_DEPTH)}, headers=h),
        400,
        "json_too_deep",
    )
    assert table_snapshot(settings) == before
    listed = await (await client.get("/api/agents", headers=h)).json()
    assert listed["total"] == 1 and listed["agents"][0]["contextData"] == context(MAX_DEPTH - 1)


async def test_a_deep_call_context_is_refused_before_it_is_stored(client, auth, store, settings):
    _, sid = seed_call(store, "alice", ended_at=None)
    store.write_sync(lambda db: sessions_repo.mark_active(db, sid, job_id="j1"))
    before = table_snapshot(settings)
    deep = b'{"context":' + nested_object(900) + b"}"
    await assert_error(
        await client.put(
            f"/api/calls/{sid}/context", data=deep, headers={**auth("alice"), "Content-Type": "application/json"}
        ),
        400,
        "json_too_deep",
    )
    assert table_snapshot(settings) == before
    assert (await client.get("/api/calls/active", headers=auth("alice"))).status == 200


def _store_raw(store, sql: str, args: list) -> None:
    store.write_sync(lambda db: db.execute(sql, args))


async def test_rows_stored_before_the_limit_list_with_the_deep_field_null_and_a_log_line(client, auth, store, caplog):
    """As the attack left them: a 900-deep call context and agent contextData, written before bodies were checked."""
    deep = nested_object(900).decode()
    agent = seed_agent(store, "alice", name="Deep")
    fine = seed_agent(store, "alice", name="Fine", contextData={"plan": "gold"})
    _store_raw(store, "UPDATE agents SET context_data = ? WHERE id = ?", [deep, agent["id"]])
    _, live = seed_call(store, "alice", agent_id=fine["id"], ended_at=None)
    store.write_sync(lambda db: sessions_repo.mark_active(db, live, job_id="j1"))
    _, ended = seed_call(store, "alice", agent_id=fine["id"], started_at="2026-01-11T10:00:00.000000Z")
    for sid in (live, ended):
        _store_raw(store, "UPDATE sessions SET context = ? WHERE id = ?", [deep, sid])
    h = auth("alice")
    with caplog.at_level(logging.WARNING, logger="voxarena.api"):
        agents = await (await client.get("/api/agents", headers=h)).json()
        by_name = {a["name"]: a for a in agents["agents"]}
        assert agents["total"] == 2 and by_name["Deep"]["contextData"] is None
        assert by_name["Fine"]["contextData"] == {"plan": "gold"}
        v1 = await client.get("/api/v1/agents", headers=h)
        assert v1.status == 200 and len(await v1.json()) == 2
        one = await client.get(f"/api/agents/{agent['id']}", headers=h)
        assert one.status == 200 and (await one.json())["contextData"] is None
        (active,) = await (await client.get("/api/calls/active", headers=h)).json()
        assert active["id"] == live and active["context"] is None
        history = await (await client.get("/api/calls/history", headers=h)).json()
        assert [c["id"] for c in history["calls"]] == [ended] and history["calls"][0]["context"] is None
    logged = " ".join(r.getMessage() for r in caplog.records)
    assert f"agent {agent['id']}: contextData nests deeper" in logged and f"call {live}: context" in logged


async def test_a_chat_socket_answers_a_deep_frame_with_an_error_and_stays_open(client, auth, store):
    agent = seed_agent(store, "alice")
    sid = store.write_sync(
        lambda db: sessions_repo.create(
            db, owner_id=tenant_of("alice"), agent_id=agent["id"], channel="text", status="active"
        )
    )
    async with client.ws_connect(f"/ws/chat/{sid}", headers=auth("alice")) as ws:
        for frame in (nested_object(10_000), b"[" * 30_000, nested_array(MAX_DEPTH + 1)):  # frames are <= 64 KB
            await ws.send_str(frame.decode())
            msg = await ws.receive_json(timeout=10)
            assert msg["type"] == "error" and str(MAX_DEPTH) in msg["detail"], msg
        await ws.send_json({"type": "ping"})
        assert (await ws.receive_json(timeout=10)) == {"type": "pong"}
