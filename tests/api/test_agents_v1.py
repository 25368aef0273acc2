"""Agents the Autonomite (002) and Phony (003) way: /api/v1/agents in snake_case, slugs, the added fields on 001's
shape, and 003's filters; one set of agents behind both paths."""

from __future__ import annotations

from tests.api.seed import AGENT_WIRE
from tests.conftest import assert_error


async def test_v1_agents_serve_002s_shape_and_share_001s_agents(client, auth):
    h = auth("alice")
    body = {
        "name": "New Agent",
        "slug": "new-agent",
        "description": "A new AI agent",
        "system_prompt": "You are a helpful assistant.",
        "voice_settings": {"provider": "openai", "voice_id": "alloy", "temperature": 0.7},
    }
    resp = await client.post("/api/v1/agents", json=body, headers=h)
    assert resp.status == 201, await resp.text()
    made = await resp.json()
    assert {k: made[k] for k in ("slug", "name", "description", "client_id", "enabled", "voice_settings")} == {
        "slug": "new-agent",
        "name": "New Agent",
        "description": "A new AI agent",
        "client_id": None,
        "enabled": True,
        "voice_settings": {"provider": "openai", "voice_id": "alloy", "temperature": 0.7},
    }
    listed = await (await client.get("/api/v1/agents", headers=h)).json()
    assert listed == [made]  # a bare array
    # the same agent through 001's path, with the added fields in camelCase; voice_id became its voice
    same = await (await client.get(f"/api/agents/{made['id']}", headers=h)).json()
    assert same["slug"] == "new-agent" and same["voiceId"] == "alloy" and same["systemPrompt"] == body["system_prompt"]
    assert same["voiceSettings"] == body["voice_settings"] and same["totalCalls"] == 0 and same["type"] == "inbound"
    await assert_error(await client.post("/api/v1/agents", json=body, headers=h), 409, "conflict")
    await assert_error(await client.post("/api/agents", json={**AGENT_WIRE, "slug": "new-agent"}, headers=h), 409)

    updated = await (
        await client.put(f"/api/v1/agents/{made['id']}", json={"name": "Updated Agent", "enabled": False}, headers=h)
    ).json()
    assert updated["name"] == "Updated Agent" and updated["enabled"] is False
    assert await (await client.get("/api/v1/agents?active=false", headers=h)).json() == [updated]
    assert await (await client.get("/api/v1/agents?active=true", headers=h)).json() == []
    deleted = await client.delete(f"/api/v1/agents/{made['id']}", headers=h)
    assert deleted.status == 200 and (await deleted.json())["success"] is True
    await assert_error(await client.get(f"/api/v1/agents/{made['id']}", headers=h), 404)


async def test_001s_agents_take_003s_fields_names_and_filters(client, auth):
    h = auth("alice")
    phony = {
        "name": "Sales Agent",
        "type": "outbound",
        "system_prompt": "You are a sales representative...",
        "voice": "nova",
        "context_data": {"department": "sales", "region": "west"},
        "phone_number": "+15551234567",
    }
    resp = await client.post("/api/agents", json=phony, headers=h)
    assert resp.status == 201, await resp.text()
    sales = await resp.json()
    assert (sales["type"], sales["status"], sales["voiceId"], sales["phoneNumber"], sales["slug"]) == (
        "outbound",
        "active",
        "nova",
        "+15551234567",
        "sales-agent",
    )
    assert sales["contextData"] == {"department": "sales", "region": "west"}
    support = await (
        await client.post("/api/agents", json={**AGENT_WIRE, "name": "Support", "status": "inactive"}, headers=h)
    ).json()

    def by(q):
        return client.get(f"/api/agents?{q}", headers=h)

    assert [a["id"] for a in (await (await by("type=outbound")).json())["agents"]] == [sales["id"]]
    assert [a["id"] for a in (await (await by("status=inactive")).json())["agents"]] == [support["id"]]
    assert (await (await by("tenant_id=ten_someone_else")).json()) == {"agents": [], "total": 0}
    await assert_error(await by("type=sideways"), 422)
    await assert_error(await client.post("/api/agents", json={**phony, "phone_number": "555"}, headers=h), 422)
