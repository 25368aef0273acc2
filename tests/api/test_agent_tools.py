"""An agent's `tools` on /api/agents (camelCase) and /api/v1/agents (snake_case): what is accepted, what is refused
with a 422 naming the field (and nothing written), URLs checked against the outbound policy when saved, and header
values sealed at rest and masked in every response."""

from __future__ import annotations

import pytest

from tests.api.seed import AGENT_WIRE
from tests.conftest import assert_error, db_rows, table_snapshot

BOOK = {
    "type": "http",
    "name": "book_slot",
    "description": "Book an appointment slot.",
    "parameters": {"type": "object", "properties": {"time": {"type": "string"}}, "required": ["time"]},
    "url": "https://api.clinic.test/book",
    "headers": {"Authorization": "Bearer clinic-secret-4242"},
    "timeoutMs": 4000,
    "filler": "One moment while I check.",
}


@pytest.fixture(autouse=True)
def public_names(dns_server):
    dns_server.records.update({"api.clinic.test": ["93.184.215.14"], "metadata.clinic.test": ["169.254.169.254"]})


async def _create(client, auth, tools, user="alice"):
    return await client.post("/api/agents", json={**AGENT_WIRE, "tools": tools}, headers=auth(user))


async def test_an_agent_keeps_its_tools_with_header_values_sealed_and_masked(client, auth, settings):
    resp = await _create(client, auth, [BOOK, {"type": "end_call"}, {"type": "transfer_call", "target": "+15550100"}])
    assert resp.status == 201, await resp.text()
    agent = await resp.json()
    http, end, transfer = agent["tools"]
    assert http == {**BOOK, "method": "POST", "headers": {"Authorization": "****4242"}}
    assert end == {"type": "end_call"} and transfer == {"type": "transfer_call", "target": "+15550100"}

    [row] = db_rows(settings, "SELECT config FROM agents WHERE id = ?", [agent["id"]])
    assert "clinic-secret" not in row["config"] and "Bearer" not in row["config"]
    got = await (await client.get(f"/api/agents/{agent['id']}", headers=auth("alice"))).json()
    assert got["tools"] == agent["tools"]
    listed = await (await client.get("/api/agents", headers=auth("alice"))).json()
    assert listed["agents"][0]["tools"][0]["headers"] == {"Authorization": "****4242"}


async def test_a_masked_header_sent_back_keeps_the_stored_value_and_a_new_one_replaces_it(
    client, auth, settings, store
):
    from api.keys import SECRETS
    from core.pipeline import agent_config
    from core.store import agents as agents_repo
    from core.tools import agent_tools
    from tests.api.seed import tenant_of

    agent = await (await _create(client, auth, [BOOK])).json()
    sent_back = {**agent["tools"][0], "headers": {"Authorization": "****4242", "X-Clinic": "site-7"}}
    resp = await client.put(f"/api/agents/{agent['id']}", json={"tools": [sent_back]}, headers=auth("alice"))
    assert resp.status == 200, await resp.text()
    assert (await resp.json())["tools"][0]["headers"] == {"Authorization": "****4242", "X-Clinic": "****"}

    box = client.app[SECRETS]
    row = store.read_sync(agents_repo.get, tenant_of("alice"), agent["id"])
    [tool] = agent_tools(agent_config(row))
    assert {k: box.open(v) for k, v in tool.headers.items()} == {
        "Authorization": "Bearer clinic-secret-4242",
        "X-Clinic": "site-7",
    }

    unknown = {**agent["tools"][0], "headers": {"X-Other": "****"}}
    before = table_snapshot(settings)
    resp = await client.put(f"/api/agents/{agent['id']}", json={"tools": [unknown]}, headers=auth("alice"))
    body = await assert_error(resp, 422)
    assert "tools[0].headers.X-Other" in body["detail"]
    assert table_snapshot(settings) == before


async def test_a_transfer_tool_keeps_its_warm_mode(client, auth):
    warm = {"type": "transfer_call", "target": "sip:desk@pbx.clinic.test", "mode": "warm"}
    resp = await _create(client, auth, [warm])
    assert resp.status == 201, await resp.text()
    assert (await resp.json())["tools"] == [warm]


@pytest.mark.parametrize(
    ("tools", "says"),
    [
        ([{**BOOK, "name": "book slot"}], "name"),
        ([{**BOOK, "name": "9lives"}], "name"),
        ([BOOK, {**BOOK, "description": "again"}], "used twice"),
        ([{**BOOK, "name": "end_call"}], "call tool"),
        ([{"type": "end_call"}, {"type": "end_call"}], "used twice"),
        ([{**BOOK, "parameters": {"type": "array"}}], 'type "object"'),
        ([{**BOOK, "parameters": {"type": "object", "properties": {"a": {"type": "text"}}}}], "JSON Schema"),
        ([{**BOOK, "timeoutMs": 50}], "timeoutMs"),
        ([{**BOOK, "timeoutMs": 30_001}], "timeoutMs"),
        ([{**BOOK, "url": "ftp://api.clinic.test/book"}], "http"),
        ([{**BOOK, "method": "DELETE"}], "method"),
        ([{**BOOK, "headers": {"X-Voxarena-Signature": "forged"}}], "set by the product"),
        ([{**BOOK, "headers": {"X-A": "two\nlines"}}], "one line"),
        ([{"type": "transfer_call", "target": "bob"}], "target"),
        ([{"type": "transfer_call", "target": "+15550100", "mode": "hot"}], "mode"),
        ([{"type": "shell", "command": "rm"}], "type"),
        ([{**BOOK, "name": f"tool_{i}"} for i in range(21)], "tools"),
    ],
)
async def test_an_invalid_tool_is_a_422_naming_it_and_nothing_is_written(client, auth, settings, tools, says):
    before = table_snapshot(settings)
    body = await assert_error(await _create(client, auth, tools), 422)
    assert says in body["detail"], body["detail"]
    assert table_snapshot(settings) == before


@pytest.mark.parametrize(
    "url",
    [
        "http://169.254.169.254/latest/meta-data/",
        "http://metadata.clinic.test/latest",  # a name that resolves there
        "http://127.0.0.1:8080/api/agents",
        "http://[::ffff:10.0.0.1]/",
    ],
)
async def test_a_tool_url_on_a_private_or_metadata_address_is_refused_when_saved(client, auth, settings, url):
    before = table_snapshot(settings)
    body = await assert_error(await _create(client, auth, [{**BOOK, "url": url}]), 422)
    assert body["detail"].startswith("body tools[0].url:"), body["detail"]
    assert table_snapshot(settings) == before

    agent = await (await _create(client, auth, [BOOK])).json()
    resp = await client.put(f"/api/agents/{agent['id']}", json={"tools": [{**BOOK, "url": url}]}, headers=auth("alice"))
    await assert_error(resp, 422)


async def test_the_autonomite_shape_takes_and_shows_tools_in_snake_case(client, auth):
    tool = {**{k: v for k, v in BOOK.items() if k != "timeoutMs"}, "timeout_ms": 2500}
    resp = await client.post("/api/v1/agents", json={"name": "v1", "tools": [tool]}, headers=auth("alice"))
    assert resp.status == 201, await resp.text()
    shown = (await resp.json())["tools"][0]
    assert shown["timeout_ms"] == 2500 and "timeoutMs" not in shown
    assert shown["headers"] == {"Authorization": "****4242"}
    camel = await (await client.get(f"/api/agents/{(await resp.json())['id']}", headers=auth("alice"))).json()
    assert camel["tools"][0]["timeoutMs"] == 2500


async def test_clearing_the_tools_leaves_none(client, auth):
    agent = await (await _create(client, auth, [BOOK])).json()
    resp = await client.put(f"/api/agents/{agent['id']}", json={"tools": []}, headers=auth("alice"))
    assert (await resp.json())["tools"] == []
