"""004's ingest routes: per-item validation, idempotent replays, the one ledger, webhook-token auth."""

from __future__ import annotations

import random
from decimal import Decimal

from core.store import ingest as ingest_repo
from pipelines.pricing import PriceBook, to_nanos
from tests.api.seed import tenant_of
from tests.conftest import assert_error, table_snapshot

BOOK = PriceBook.load()

SEED_ITEM = {
    "provider": "openai",
    "model": "o3-mini",
    "tokens_in": 291,
    "tokens_out": 572,
    "cost_usd": 0.002837,
    "campaign_name": "Ohio",
    "contact_email": "cs@foxtronix.com",
    "purpose": "company_summarization",
    "workflow_id": "CiaofBF4zkgB2bhR",
    "run_id": "990",
    "metadata": {"workflow_type": "Email Preparation", "data_source": "api_exact"},
}


async def _key(client, auth, user: str) -> str:
    resp = await client.post("/api/keys", json={"name": "n8n"}, headers=auth(user))
    assert resp.status == 201, await resp.text()
    return (await resp.json())["key"]


async def test_the_seed_cost_event_is_stored_with_its_exact_cost_through_the_webhook_token(client, auth, store):
    key = await _key(client, auth, "alice")
    resp = await client.post("/api/cost-events", json=[SEED_ITEM], headers={"x-webhook-token": key})
    assert resp.status == 200, await resp.text()
    body = await resp.json()
    assert {k: body[k] for k in ("success", "inserted", "errors", "duplicates")} == {
        "success": True,
        "inserted": 1,
        "errors": 0,
        "duplicates": 0,
    }
    [result] = body["results"]
    assert set(result) >= {"id", "provider", "model", "cost_usd"}
    assert result["provider"] == "openai" and result["model"] == "o3-mini" and result["cost_usd"] == 0.002837
    assert result["cost_nanos"] == 2_837_000 and result["priced_cost_usd"] is None  # o3-mini has no price here
    # The ledger holds it: the tenant's cost summary counts it exactly.
    summary = await (await client.get("/api/costs/summary", headers=auth("alice"))).json()
    assert summary["total_cost_nanos"] == 2_837_000 and summary["by_provider"] == {"openai": 0.002837}
    assert (await (await client.get("/api/costs/summary", headers=auth("bob"))).json())["total_cost_nanos"] == 0


async def test_a_known_model_keeps_the_priced_figure_beside_the_reported_one(client, auth):
    item = {"provider": "OpenAI", "model": "gpt-4o-mini", "tokens_in": 1000, "tokens_out": 2000, "cost_usd": "0.01"}
    body = await (await client.post("/api/llm-usage", json=[item], headers=auth("alice"))).json()
    [r] = body["results"]
    priced = to_nanos(Decimal(1000) * Decimal("0.00015") / 1000 + Decimal(2000) * Decimal("0.0006") / 1000)
    assert r["provider"] == "openai" and r["cost_nanos"] == 10_000_000 and r["reported_cost_usd"] == 0.01
    assert r["priced_cost_usd"] == priced / 1e9 == 0.00135
    # Without a reported cost the priced figure is what the ledger counts.
    body = await (
        await client.post("/api/cost-events", json=[{**item, "cost_usd": None, "run_id": 7}], headers=auth("alice"))
    ).json()
    assert body["results"][0]["cost_nanos"] == priced and body["results"][0]["reported_cost_usd"] is None


async def test_each_item_is_validated_on_its_own(client, auth, store):
    items = [
        {**SEED_ITEM, "run_id": "1"},
        {"model": "x", "cost_usd": 0.1},  # no provider
        {**SEED_ITEM, "run_id": "2", "cost_usd": -1},
        "not an object",
        {**SEED_ITEM, "run_id": "3", "tokens_in": "12"},  # lenient like the workflows: "12" is 12
    ]
    body = await (await client.post("/api/cost-events", json=items, headers=auth("alice"))).json()
    assert body["success"] is False and body["inserted"] == 2 and body["errors"] == 3 and body["duplicates"] == 0
    assert [e["index"] for e in body["error_details"]] == [1, 2, 3]
    assert body["error_details"][0]["error"] == "Missing required field: provider"
    assert [r["index"] for r in body["results"]] == [0, 4]
    assert store.read_sync(ingest_repo.count_costs, tenant_of("alice")) == (2, 2 * 2_837_000)


async def test_a_request_with_nothing_valid_is_a_400_with_004s_error_keys_and_writes_nothing(client, auth, settings):
    before = table_snapshot(settings)
    for payload in ([{"model": "x"}], [], {"contact_email": "a@b.c"}):
        path = "/api/events" if isinstance(payload, dict) else "/api/cost-events"
        body = await assert_error(await client.post(path, json=payload, headers=auth("alice")), 400)
        assert body["error"] == "Invalid request format" and body["details"] == body["detail"]
    body = await assert_error(await client.post("/api/cost-events", data=b"{nope", headers=auth("alice")), 400)
    assert "not valid JSON" in body["details"]
    body = await assert_error(
        await client.post("/api/cost-events", json=[SEED_ITEM], headers={"x-webhook-token": "vxa_wrong"}), 401
    )
    assert body["error"] == "Unauthorized" and body["details"]
    assert table_snapshot(settings) == before
    # Other routes keep the one error body alone.
    body = await assert_error(await client.get("/api/costs/summary"), 401)
    assert "error" not in body


async def test_a_thousand_events_sent_one_to_three_times_are_stored_once_with_exact_totals(client, auth, store):
    rng = random.Random(15)
    events = [
        {
            "provider": "anthropic",
            "model": "claude",
            "tokens_in": i,
            "tokens_out": i + 1,
            "cost_usd": f"0.{rng.randrange(10**8):08d}",
            "workflow_id": "wf",
            "run_id": str(i),
            "purpose": "p",
            "campaign_name": "Ohio",
        }
        for i in range(1000)
    ]
    expected = sum(to_nanos(Decimal(e["cost_usd"])) for e in events)
    sends = [e for e in events for _ in range(rng.randint(1, 3))]
    rng.shuffle(sends)
    inserted = duplicates = 0
    for i in range(0, len(sends), 250):
        body = await (await client.post("/api/cost-events", json=sends[i : i + 250], headers=auth("alice"))).json()
        assert body["errors"] == 0
        inserted += body["inserted"]
        duplicates += body["duplicates"]
    assert inserted == 1000 and duplicates == len(sends) - 1000
    assert store.read_sync(ingest_repo.count_costs, tenant_of("alice")) == (1000, expected)
    summary = await (await client.get("/api/costs/summary", headers=auth("alice"))).json()
    assert summary["total_cost_nanos"] == expected and summary["event_count"] == 1000


async def test_the_idempotency_key_replays_a_request_and_refuses_another_body(client, auth, store):
    h = {**auth("alice"), "Idempotency-Key": "batch-1"}
    items = [
        {"provider": "openai", "model": "m", "cost_usd": 0.5},
        {"provider": "openai", "model": "m", "cost_usd": 0.25},
    ]
    first = await (await client.post("/api/cost-events", json=items, headers=h)).json()
    again = await (await client.post("/api/cost-events", json=items, headers=h)).json()
    assert first["inserted"] == 2 and again["inserted"] == 0 and again["duplicates"] == 2 and again["errors"] == 0
    assert [r["id"] for r in again["results"]] == [r["id"] for r in first["results"]]
    assert all(r["duplicate"] for r in again["results"])
    changed = await client.post("/api/cost-events", json=[{**items[0], "cost_usd": 9}], headers=h)
    body = await assert_error(changed, 400, "invalid_events")
    assert "different event" in body["detail"]
    assert store.read_sync(ingest_repo.count_costs, tenant_of("alice")) == (2, 750_000_000)
    # Without the key the same items are new (they have no natural key).
    other = await (await client.post("/api/cost-events", json=items, headers=auth("alice"))).json()
    assert other["inserted"] == 2
    # Another tenant's identical key is its own.
    bob = await (
        await client.post("/api/cost-events", json=items, headers={**auth("bob"), "Idempotency-Key": "batch-1"})
    ).json()
    assert bob["inserted"] == 2


async def test_outreach_events_are_idempotent_by_message_id_and_event_type(client, auth):
    key = await _key(client, auth, "alice")
    h = {"x-webhook-token": key}
    sent = {
        "contact_email": "John@Example.com",
        "campaign": "Ohio",
        "step": 1,
        "event_type": "sent",
        "provider": "gmail",
        "provider_message_id": "18c2f7a",
        "event_ts": "2025-12-03T15:12:02.000Z",
    }
    body = await (await client.post("/api/events", json=sent, headers=h)).json()
    assert body["inserted"] == 1 and body["results"][0]["contact_email"] == "john@example.com"
    replied = {**sent, "event_type": "replied", "event_ts": "2025-12-04T09:00:00Z"}
    body = await (
        await client.post("/api/events", json=[sent, replied, {**sent, "event_type": "clicked"}], headers=h)
    ).json()
    assert (body["inserted"], body["duplicates"], body["errors"]) == (1, 1, 1)
    assert body["error_details"][0]["index"] == 2 and "event_type" in body["error_details"][0]["error"]
