from __future__ import annotations

from tests.conftest import assert_error, table_snapshot

AGENT = {"name": "Support", "systemPrompt": "You are helpful.", "sttProvider": "deepgram", "llmProvider": "gemini",
         "ttsProvider": "elevenlabs"}
AGENT_KEYS = {"id", "name", "systemPrompt", "sttProvider", "llmProvider", "ttsProvider", "createdAt", "updatedAt"}


async def test_agent_crud_round_trip_serves_the_contract_shapes(client, auth):
    h = auth("alice")
    resp = await client.post("/api/agents", json={**AGENT, "firstMessage": "Hi!", "firstMessageMode": "assistant_speaks_first"}, headers=h)
    assert resp.status == 201
    agent = await resp.json()
    assert AGENT_KEYS <= agent.keys()
    assert agent["firstMessage"] == "Hi!" and agent["firstMessageMode"] == "assistant_speaks_first"
    assert agent["createdAt"].endswith("Z") and agent["createdAt"] == agent["updatedAt"]

    listed = await (await client.get("/api/agents", headers=h)).json()
    assert listed == {"agents": [agent], "total": 1}
    assert await (await client.get(f"/api/agents/{agent['id']}", headers=h)).json() == agent

    put = await client.put(f"/api/agents/{agent['id']}", json={"name": "Sales", "ttsProvider": "resemble"}, headers=h)
    updated = await put.json()
    assert put.status == 200
    assert updated["name"] == "Sales" and updated["ttsProvider"] == "resemble"
    assert updated["systemPrompt"] == AGENT["systemPrompt"]
    assert updated["updatedAt"] > agent["updatedAt"]

    patch = await client.patch(f"/api/agents/{agent['id']}/", json={"firstMessage": None}, headers=h)
    assert (await patch.json())["firstMessage"] is None

    deleted = await client.delete(f"/api/agents/{agent['id']}", headers=h)
    assert await deleted.json() == {"success": True}
    await assert_error(await client.get(f"/api/agents/{agent['id']}", headers=h), 404, "not_found")
    assert await (await client.get("/api/agents/", headers=h)).json() == {"agents": [], "total": 0}


async def test_unsupported_provider_is_a_422_listing_the_accepted_values(client, auth, settings):
    before = table_snapshot(settings.database_path)
    for field, bad, accepted in [
        ("sttProvider", "whisper", ["deepgram", "assemblyai", "elevenlabs"]),
        ("llmProvider", "anthropic", ["gemini", "openai"]),
        ("ttsProvider", "cartesia", ["elevenlabs", "resemble", "google"]),
    ]:
        body = await assert_error(await client.post("/api/agents", json={**AGENT, field: bad}, headers=auth("alice")),
                                  422, "validation_error")
        assert field in body["detail"]
        for value in accepted:
            assert value in body["detail"]
    assert table_snapshot(settings.database_path) == before


async def test_fallback_providers_are_validated_like_the_primary_ones_and_round_trip(client, auth, settings):
    before = table_snapshot(settings.database_path)
    for field, bad in [("fallbackSttProviders", ["whisper"]), ("fallbackLlmProviders", ["anthropic"]),
                       ("fallbackTtsProviders", ["cartesia"]), ("fallbackSttProviders", ["assemblyai", "assemblyai"]),
                       ("fallbackTtsProviders", "resemble"), ("fallbackLlmProviders", ["openai"] * 4),
                       ("errorMessage", "")]:
        body = await assert_error(await client.post("/api/agents", json={**AGENT, field: bad}, headers=auth("alice")),
                                  422, "validation_error")
        assert field in body["detail"], body
    assert table_snapshot(settings.database_path) == before
    resp = await client.post("/api/agents", headers=auth("alice"), json={
        **AGENT, "fallbackSttProviders": ["assemblyai"], "fallbackLlmProviders": ["openai"],
        "errorMessage": "Sorry, we have a problem; please call back."})
    assert resp.status == 201
    agent = await resp.json()
    assert agent["fallbackSttProviders"] == ["assemblyai"] and agent["fallbackLlmProviders"] == ["openai"]
    assert agent["fallbackTtsProviders"] == [] and agent["errorMessage"].startswith("Sorry")
    resp = await client.put(f"/api/agents/{agent['id']}", headers=auth("alice"),
                            json={"fallbackLlmProviders": [], "fallbackTtsProviders": ["resemble"]})
    updated = await resp.json()
    assert updated["fallbackLlmProviders"] == [] and updated["fallbackTtsProviders"] == ["resemble"]
    assert updated["fallbackSttProviders"] == ["assemblyai"]


async def test_update_refuses_null_for_required_fields_and_writes_nothing(client, auth, settings):
    h = auth("alice")
    agent = await (await client.post("/api/agents", json=AGENT, headers=h)).json()
    before = table_snapshot(settings.database_path)
    await assert_error(await client.put(f"/api/agents/{agent['id']}", json={"name": None}, headers=h), 422)
    await assert_error(await client.put(f"/api/agents/{agent['id']}", json={"name": 5}, headers=h), 422)
    assert table_snapshot(settings.database_path) == before


async def test_create_fills_provider_defaults_and_ignores_read_only_fields(client, auth):
    resp = await client.post("/api/agents", json={"name": "x", "systemPrompt": "y", "id": "mine", "createdAt": "then"},
                             headers=auth("alice"))
    agent = await resp.json()
    assert agent["id"] != "mine"
    assert (agent["sttProvider"], agent["llmProvider"], agent["ttsProvider"]) == ("deepgram", "gemini", "elevenlabs")
    assert agent["firstMessageMode"] == "assistant_waits"
