from __future__ import annotations

import asyncio
import json
import threading

import pytest

from api.schemas.agents import storage
from api.services import agents as agents_service
from api.services.agents import AgentListCache
from core.pipeline import agent_spec
from core.store import agents as agents_repo
from tests.api.seed import tenant_of
from tests.conftest import assert_error, sqlite_only, table_snapshot

AGENT = {
    "name": "Support",
    "systemPrompt": "You are helpful.",
    "sttProvider": "deepgram",
    "llmProvider": "gemini",
    "ttsProvider": "elevenlabs",
}
AGENT_KEYS = {"id", "name", "systemPrompt", "sttProvider", "llmProvider", "ttsProvider", "createdAt", "updatedAt"}


async def test_agent_crud_round_trip_serves_the_contract_shapes(client, auth):
    h = auth("alice")
    resp = await client.post(
        "/api/agents", json={**AGENT, "firstMessage": "Hi!", "firstMessageMode": "assistant_speaks_first"}, headers=h
    )
    assert resp.status == 201
    agent = await resp.json()
    assert agent.keys() >= AGENT_KEYS
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
    assert await deleted.json() == {"success": True, "message": "Agent deleted successfully"}  # 003 adds message
    await assert_error(await client.get(f"/api/agents/{agent['id']}", headers=h), 404, "not_found")
    assert await (await client.get("/api/agents/", headers=h)).json() == {"agents": [], "total": 0}


async def test_unsupported_provider_is_a_422_listing_the_accepted_values(client, auth, settings):
    before = table_snapshot(settings)
    for field, bad, accepted in [
        ("sttProvider", "whisper", ["deepgram", "assemblyai", "elevenlabs"]),
        ("llmProvider", "anthropic", ["gemini", "openai"]),
        ("ttsProvider", "cartesia", ["elevenlabs", "resemble", "google"]),
    ]:
        body = await assert_error(
            await client.post("/api/agents", json={**AGENT, field: bad}, headers=auth("alice")), 422, "validation_error"
        )
        assert field in body["detail"]
        for value in accepted:
            assert value in body["detail"]
    assert table_snapshot(settings) == before


async def test_fallback_providers_are_validated_like_the_primary_ones_and_round_trip(client, auth, settings):
    before = table_snapshot(settings)
    for field, bad in [
        ("fallbackSttProviders", ["whisper"]),
        ("fallbackLlmProviders", ["anthropic"]),
        ("fallbackTtsProviders", ["cartesia"]),
        ("fallbackSttProviders", ["assemblyai", "assemblyai"]),
        ("fallbackTtsProviders", "resemble"),
        ("fallbackLlmProviders", ["openai"] * 4),
        ("errorMessage", ""),
    ]:
        body = await assert_error(
            await client.post("/api/agents", json={**AGENT, field: bad}, headers=auth("alice")), 422, "validation_error"
        )
        assert field in body["detail"], body
    assert table_snapshot(settings) == before
    resp = await client.post(
        "/api/agents",
        headers=auth("alice"),
        json={
            **AGENT,
            "fallbackSttProviders": ["assemblyai"],
            "fallbackLlmProviders": ["openai"],
            "errorMessage": "Sorry, we have a problem; please call back.",
        },
    )
    assert resp.status == 201
    agent = await resp.json()
    assert agent["fallbackSttProviders"] == ["assemblyai"] and agent["fallbackLlmProviders"] == ["openai"]
    assert agent["fallbackTtsProviders"] == [] and agent["errorMessage"].startswith("Sorry")
    resp = await client.put(
        f"/api/agents/{agent['id']}",
        headers=auth("alice"),
        json={"fallbackLlmProviders": [], "fallbackTtsProviders": ["resemble"]},
    )
    updated = await resp.json()
    assert updated["fallbackLlmProviders"] == [] and updated["fallbackTtsProviders"] == ["resemble"]
    assert updated["fallbackSttProviders"] == ["assemblyai"]


async def test_turn_taking_settings_are_validated_round_trip_and_stay_in_order(client, auth, settings, store):
    h = auth("alice")
    before = table_snapshot(settings)
    for field, bad in [
        ("minEndpointingDelay", -0.1),
        ("minEndpointingDelay", 6),
        ("maxEndpointingDelay", 0),
        ("maxEndpointingDelay", 31),
        ("interruptionMinWords", -1),
        ("interruptionMinWords", 1.5),
        ("interruptionMinDuration", 0),
        ("backchannelWords", ["mhm", " "]),
        ("backchannelWords", ["x" * 41]),
        ("backchannelWords", ["w"] * 51),
        ("backchannelWords", "mhm"),
        ("preemptiveGeneration", "sometimes"),
    ]:
        body = await assert_error(await client.post("/api/agents", json={**AGENT, field: bad}, headers=h), 422)
        assert field in body["detail"], (field, body)
    body = await assert_error(
        await client.post("/api/agents", json={**AGENT, "minEndpointingDelay": 2, "maxEndpointingDelay": 1}, headers=h),
        422,
    )
    assert "minEndpointingDelay" in body["detail"]
    assert table_snapshot(settings) == before

    made = await client.post(
        "/api/agents",
        headers=h,
        json={
            **AGENT,
            "minEndpointingDelay": 0.6,
            "maxEndpointingDelay": 2.5,
            "interruptionMinWords": 2,
            "interruptionMinDuration": 0.3,
            "backchannelWords": ["Mhm", "yeah", "Uh  Huh", "mhm"],
            "preemptiveGeneration": False,
        },
    )
    assert made.status == 201
    agent = await made.json()
    assert (agent["minEndpointingDelay"], agent["maxEndpointingDelay"]) == (0.6, 2.5)
    assert (agent["interruptionMinWords"], agent["interruptionMinDuration"]) == (2, 0.3)
    assert agent["backchannelWords"] == ["mhm", "yeah", "uh huh"] and agent["preemptiveGeneration"] is False
    fetched = await (await client.get(f"/api/agents/{agent['id']}", headers=h)).json()
    assert fetched == agent
    # the job reads the same settings
    spec = agent_spec(await store.read(agents_repo.get, tenant_of("alice"), agent["id"]))
    assert spec.turn_taking.backchannel_words == ("mhm", "yeah", "uh huh")
    assert spec.turn_taking.min_endpointing_delay == 0.6 and spec.turn_taking.preemptive_generation is False

    # one delay alone may not leave the stored pair out of order; nothing is written
    before = table_snapshot(settings)
    body = await assert_error(
        await client.patch(f"/api/agents/{agent['id']}", json={"minEndpointingDelay": 3}, headers=h), 422
    )
    assert "maxEndpointingDelay" in body["detail"]
    assert table_snapshot(settings) == before
    updated = await client.patch(
        f"/api/agents/{agent['id']}", json={"maxEndpointingDelay": None, "minEndpointingDelay": 3}, headers=h
    )
    assert updated.status == 200
    updated = await updated.json()
    assert updated["minEndpointingDelay"] == 3 and updated["maxEndpointingDelay"] is None
    # an agent without them: nulls and an empty list, the product's defaults
    plain = await (await client.post("/api/agents", json=AGENT, headers=h)).json()
    assert plain["backchannelWords"] == [] and plain["minEndpointingDelay"] is None


async def test_voicemail_detection_settings_are_validated_round_trip_and_reach_the_job(client, auth, settings, store):
    h = auth("alice")
    before = table_snapshot(settings)
    for field, bad in [
        ("voicemailDetection", "maybe"),
        ("voicemailAction", "transfer"),
        ("voicemailMessage", ""),
        ("voicemailMessage", "x" * 2_001),
    ]:
        body = await assert_error(await client.post("/api/agents", json={**AGENT, field: bad}, headers=h), 422)
        assert field in body["detail"], (field, body)
    # leaving a message needs one
    body = await assert_error(
        await client.post("/api/agents", json={**AGENT, "voicemailAction": "leave_message"}, headers=h), 422
    )
    assert "voicemailMessage" in body["detail"]
    assert table_snapshot(settings) == before

    plain = await (await client.post("/api/agents", json=AGENT, headers=h)).json()
    assert (plain["voicemailDetection"], plain["voicemailAction"], plain["voicemailMessage"]) == (False, "hangup", None)
    assert agent_spec(await store.read(agents_repo.get, tenant_of("alice"), plain["id"])).voicemail is None

    made = await client.post(
        "/api/agents",
        headers=h,
        json={**AGENT, "voicemailDetection": True, "voicemailAction": "leave_message", "voicemailMessage": "Call us."},
    )
    assert made.status == 201
    agent = await made.json()
    assert (agent["voicemailDetection"], agent["voicemailAction"], agent["voicemailMessage"]) == (
        True,
        "leave_message",
        "Call us.",
    )
    assert await (await client.get(f"/api/agents/{agent['id']}", headers=h)).json() == agent
    spec = agent_spec(await store.read(agents_repo.get, tenant_of("alice"), agent["id"]))
    assert (spec.voicemail.action, spec.voicemail.message) == ("leave_message", "Call us.")
    # the message cannot be dropped while the agent leaves messages; nothing is written
    before = table_snapshot(settings)
    body = await assert_error(
        await client.patch(f"/api/agents/{agent['id']}", json={"voicemailMessage": None}, headers=h), 422
    )
    assert "voicemailMessage" in body["detail"]
    assert table_snapshot(settings) == before
    hangup = await client.patch(
        f"/api/agents/{agent['id']}", json={"voicemailAction": "hangup", "voicemailMessage": None}, headers=h
    )
    assert hangup.status == 200 and (await hangup.json())["voicemailMessage"] is None


async def test_update_refuses_null_for_required_fields_and_writes_nothing(client, auth, settings):
    h = auth("alice")
    agent = await (await client.post("/api/agents", json=AGENT, headers=h)).json()
    before = table_snapshot(settings)
    await assert_error(await client.put(f"/api/agents/{agent['id']}", json={"name": None}, headers=h), 422)
    await assert_error(await client.put(f"/api/agents/{agent['id']}", json={"name": 5}, headers=h), 422)
    assert table_snapshot(settings) == before


async def test_create_fills_provider_defaults_and_ignores_read_only_fields(client, auth):
    resp = await client.post(
        "/api/agents", json={"name": "x", "systemPrompt": "y", "id": "mine", "createdAt": "then"}, headers=auth("alice")
    )
    agent = await resp.json()
    assert agent["id"] != "mine"
    assert (agent["sttProvider"], agent["llmProvider"], agent["ttsProvider"]) == ("deepgram", "gemini", "elevenlabs")
    assert agent["firstMessageMode"] == "assistant_waits"


@pytest.fixture
def list_reads(store, monkeypatch) -> list[str]:
    """Owners whose agent list was read from SQLite (a miss of the list cache)."""
    reads: list[str] = []
    real = store.read

    async def read(fn, *args):
        if fn is agents_service._list_json:
            reads.append(args[0])
        return await real(fn, *args)

    monkeypatch.setattr(store, "read", read)
    return reads


async def _list(client, h) -> dict:
    resp = await client.get("/api/agents", headers=h)
    assert resp.status == 200 and resp.content_type == "application/json"
    return await resp.json()


@sqlite_only  # on PostgreSQL another node may change an agent: no list is cached
async def test_a_repeated_list_is_served_from_the_cache_and_every_write_shows_in_the_next_list(
    client, auth, list_reads
):
    h = auth("alice")
    assert await _list(client, h) == {"agents": [], "total": 0}
    assert await _list(client, h) == {"agents": [], "total": 0}
    assert list_reads == [tenant_of("alice")]

    first = await (await client.post("/api/agents", json=AGENT, headers=h)).json()
    assert await _list(client, h) == {"agents": [first], "total": 1}
    second = await (await client.post("/api/agents", json={**AGENT, "name": "Second"}, headers=h)).json()
    assert await _list(client, h) == {"agents": [second, first], "total": 2}
    assert await _list(client, h) == {"agents": [second, first], "total": 2}
    assert list_reads == [tenant_of("alice")] * 3

    updated = await (await client.put(f"/api/agents/{first['id']}", json={"name": "Renamed"}, headers=h)).json()
    assert (await _list(client, h))["agents"] == [second, updated]
    patched = await (await client.patch(f"/api/agents/{second['id']}", json={"language": "de"}, headers=h)).json()
    assert (await _list(client, h))["agents"] == [patched, updated]
    assert (await client.delete(f"/api/agents/{first['id']}", headers=h)).status == 200
    assert await _list(client, h) == {"agents": [patched], "total": 1}
    assert await _list(client, h) == {"agents": [patched], "total": 1}
    assert list_reads == [tenant_of("alice")] * 6


async def test_a_refused_write_changes_nothing_and_the_list_still_matches_the_store(client, auth, store, list_reads):
    h = auth("alice")
    agent = await (await client.post("/api/agents", json=AGENT, headers=h)).json()
    listed = await _list(client, h)
    await assert_error(await client.put(f"/api/agents/{agent['id']}", json={"name": None}, headers=h), 422)
    await assert_error(await client.delete("/api/agents/nope", headers=h), 404)
    assert await _list(client, h) == listed == store.read_sync(agents_service.list_wire, tenant_of("alice"))


@sqlite_only  # on PostgreSQL another node may change an agent: no list is cached
async def test_owners_never_see_each_others_cached_list_and_one_owners_write_keeps_the_others_entry(
    client, auth, list_reads
):
    alice, bob = auth("alice"), auth("bob")
    mine = await (await client.post("/api/agents", json=AGENT, headers=alice)).json()
    assert await _list(client, alice) == {"agents": [mine], "total": 1}
    assert await _list(client, bob) == {"agents": [], "total": 0}
    theirs = await (await client.post("/api/agents", json={**AGENT, "name": "Bob's"}, headers=bob)).json()
    assert await _list(client, bob) == {"agents": [theirs], "total": 1}
    assert await _list(client, alice) == {"agents": [mine], "total": 1}
    # bob's write invalidated bob's list only
    assert list_reads == [tenant_of("alice"), tenant_of("bob"), tenant_of("bob")]
    # someone else's agent cannot be written through its id, and the failed attempt leaves both lists right
    await assert_error(await client.put(f"/api/agents/{mine['id']}", json={"name": "stolen"}, headers=bob), 404)
    await assert_error(await client.delete(f"/api/agents/{mine['id']}", headers=bob), 404)
    assert await _list(client, alice) == {"agents": [mine], "total": 1}
    assert await _list(client, bob) == {"agents": [theirs], "total": 1}


async def test_a_list_read_before_a_write_never_fills_the_cache_after_it(client, auth, monkeypatch):
    h = auth("alice")
    agent = await (await client.post("/api/agents", json=AGENT, headers=h)).json()
    have_read, release = threading.Event(), threading.Event()
    real = agents_service._list_json

    def slow_list_json(db, owner_id):
        payload = real(db, owner_id)  # the rows before the rename
        have_read.set()
        release.wait(10)
        return payload

    monkeypatch.setattr(agents_service, "_list_json", slow_list_json)
    early = asyncio.ensure_future(client.get("/api/agents", headers=h))
    assert await asyncio.to_thread(have_read.wait, 10)
    monkeypatch.setattr(agents_service, "_list_json", real)
    renamed = await (await client.put(f"/api/agents/{agent['id']}", json={"name": "Renamed"}, headers=h)).json()
    release.set()
    assert (await (await early).json())["agents"] == [agent]  # began before the write: the old list is fine
    assert (await _list(client, h))["agents"] == [renamed]
    assert (await _list(client, h))["agents"] == [renamed]


async def test_a_write_whose_caller_is_cancelled_still_invalidates_once_it_commits(store):
    cache = AgentListCache()
    agent = store.write_sync(agents_repo.create, "alice", storage(AGENT))
    running, release = threading.Event(), threading.Event()

    def slow_rename(db, owner_id, agent_id):
        running.set()
        release.wait(10)
        return agents_repo.update(db, owner_id, agent_id, {"name": "Renamed"})

    writer = asyncio.ensure_future(agents_service.write(store, cache, "alice", slow_rename, agent["id"]))
    assert await asyncio.to_thread(running.wait, 10)
    writer.cancel()
    with pytest.raises(asyncio.CancelledError):
        await writer
    # the caller is gone but the write is still running: a list read now sees the old row and is cached
    old = json.loads(await agents_service.list_json(store, cache, "alice"))
    assert [a["name"] for a in old["agents"]] == ["Support"]
    release.set()
    for _ in range(100):
        if cache.get("alice") is None:
            break
        await asyncio.sleep(0.05)
    listed = json.loads(await agents_service.list_json(store, cache, "alice"))
    assert [a["name"] for a in listed["agents"]] == ["Renamed"]


def test_the_cache_keeps_to_its_byte_budget_dropping_the_least_recently_used_owner():
    cache = AgentListCache(max_bytes=100, max_entry_bytes=60)
    for owner in ("a", "b"):
        assert cache.fill(owner, cache.ticket(owner), b"x" * 40)
    assert cache.get("a") is not None  # "a" is now the most recently used
    assert cache.fill("c", cache.ticket("c"), b"y" * 40)
    assert cache.get("b") is None and cache.get("a") is not None and cache.get("c") is not None
    assert cache.size_bytes == 80 and len(cache) == 2
    assert not cache.fill("d", cache.ticket("d"), b"z" * 61)  # too big to cache at all
    assert cache.get("d") is None and cache.size_bytes == 80
    # a refill replaces the owner's entry instead of counting it twice
    assert cache.fill("a", cache.ticket("a"), b"w" * 10)
    assert cache.size_bytes == 50 and cache.get("a") == b"w" * 10


def test_an_invalidation_voids_the_tickets_of_reads_in_flight_and_abandoned_tickets_leave_nothing_behind():
    cache = AgentListCache()
    before = cache.ticket("alice")
    cache.invalidate("alice")
    after = cache.ticket("alice")
    assert not cache.fill("alice", before, b"old")
    assert cache.get("alice") is None
    assert cache.fill("alice", after, b"new") and cache.get("alice") == b"new"
    assert not cache.fill("alice", after, b"again")  # a ticket is spent once
    cache.abandon("bob", cache.ticket("bob"))
    assert cache._tickets == {}
