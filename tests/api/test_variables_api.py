"""Dynamic variables on the API: an agent lists the placeholders only a call can fill, and an outbound call's
`variables` join the call's context (where the job fills the placeholders from)."""

from __future__ import annotations

from tests.api.seed import AGENT_WIRE
from tests.api.test_calls import PHONE, settings  # noqa: F401  (the outbound trunk the calls need)
from tests.conftest import assert_error, db_rows


async def test_an_agent_warns_of_placeholders_its_own_context_does_not_fill(client, auth):
    body = {
        **AGENT_WIRE,
        "systemPrompt": "You help {{customer_name}} at {{clinic}}.",
        "firstMessage": "Hello {{customer_name}}, you called {{to_number}}.",
        "contextData": {"clinic": "Lakeside"},
    }
    agent = await (await client.post("/api/agents", json=body, headers=auth("alice"))).json()
    assert [w.split(":")[0] for w in agent["warnings"]] == ["systemPrompt", "firstMessage"]
    assert all("{{customer_name}}" in w for w in agent["warnings"])
    resp = await client.put(
        f"/api/agents/{agent['id']}",
        json={"contextData": {"clinic": "L", "customer_name": "you"}},
        headers=auth("alice"),
    )
    assert (await resp.json())["warnings"] == []


async def test_an_outbound_calls_variables_join_its_context(client, auth, settings):  # noqa: F811
    agent = await (await client.post("/api/agents", json=AGENT_WIRE, headers=auth("alice"))).json()
    resp = await client.post(
        "/api/calls/outbound",
        json={"agent_id": agent["id"], "phone_number": PHONE, "variables": {"customer_name": "Ada", "vip": True}},
        headers=auth("alice"),
    )
    assert resp.status in (200, 201), await resp.text()
    sid = (await resp.json())["session_id"]
    [row] = db_rows(settings, "SELECT context FROM sessions WHERE id = ?", [sid])
    assert row["context"] == '{"customer_name": "Ada", "vip": true}'
    bad = await client.post(
        "/api/calls/outbound",
        json={"agent_id": agent["id"], "phone_number": PHONE, "variables": {"not a name": "x"}},
        headers=auth("alice"),
    )
    await assert_error(bad, 422)
