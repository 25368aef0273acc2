"""POST /api/ask: the real google-genai client against the Gemini fake, a function-call round trip over the
product's own metric functions, metered usage, tenant scoping, and a clear 503 without a key."""

from __future__ import annotations

from decimal import Decimal

import pytest
from aiohttp.test_utils import TestClient, TestServer

from api.app import create_app
from pipelines.pricing import PriceBook, cost_nanos
from tests.conftest import assert_error
from tests.fakes import GEMINI, FakeProviders

BOOK = PriceBook.load()


@pytest.fixture
async def fakes():
    async with FakeProviders(api_key="gemini-key") as f:
        yield f


@pytest.fixture
async def asking(settings, store, fakes):
    app = create_app(
        settings.with_(google_api_key="gemini-key", google_base_url=fakes.gemini_base_url, gemini_model="gemini-fake"),
        store=store,
    )
    async with TestClient(TestServer(app, host="127.0.0.1")) as c:
        yield c


async def test_the_answer_comes_from_a_metric_function_the_model_called(asking, auth, fakes, store):
    h = auth("alice")
    events = [
        {
            "contact_email": f"c{i}@x.test",
            "campaign": "Ohio",
            "step": 1,
            "event_type": "sent",
            "event_ts": "2025-11-03T09:00:00Z",
        }
        for i in range(4)
    ]
    events.append(
        {"contact_email": "c0@x.test", "campaign": "Ohio", "event_type": "replied", "event_ts": "2025-11-04T09:00:00Z"}
    )
    assert (await (await asking.post("/api/events", json=events, headers=h)).json())["inserted"] == 5
    # bob's sends in the same campaign must not reach alice's answer
    bob = [{**e, "contact_email": f"b{i}@y.test"} for i, e in enumerate(events[:4])] * 1
    await asking.post("/api/events", json=[*bob, {**bob[0], "contact_email": "z@y.test"}], headers=auth("bob"))
    fakes.update_script(
        llm_tool_calls=[
            {"name": "metrics_summary", "args": {"start": "2025-11-01", "end": "2025-11-30", "campaign": "Ohio"}}
        ]
    )
    resp = await asking.post("/api/ask", json={"question": "What's my reply rate for the Ohio campaign?"}, headers=h)
    assert resp.status == 200, await resp.text()
    body = await resp.json()
    assert set(body) == {"answer", "timestamp"} and body["timestamp"].endswith("Z")
    # The fake answers by quoting what the function returned: the product's own figures for alice alone.
    assert "metrics_summary returned" in body["answer"]
    assert '"reply_rate_pct": 25.0' in body["answer"] and '"sends": 4,' in body["answer"]
    log = list(fakes.state.log[GEMINI])
    assert len(log) == 2
    declared = {f["name"] for t in log[0]["request"]["tools"] for f in t["functionDeclarations"]}
    assert {"metrics_summary", "metrics_by_campaign", "call_analytics", "cost_breakdown"} <= declared
    second = log[1]["request"]["contents"]
    assert second[1]["parts"][0]["functionCall"]["name"] == "metrics_summary"
    assert second[2]["parts"][0]["functionResponse"]["response"]["replies"] == 1
    # Both rounds are metered into alice's ledger, priced like any Gemini usage.
    counters = fakes.counters()[GEMINI]
    events = store.read_sync(
        lambda db: list(
            db.query(
                "SELECT * FROM usage_events WHERE source = 'ask' AND owner_id = (SELECT owner_id FROM outreach_events "
                "WHERE contact_email = 'c1@x.test')"
            )
        )
    )
    assert sum(int(e["quantity"]) for e in events if e["token_kind"] == "input") == counters["prompt_tokens"]
    assert sum(int(e["quantity"]) for e in events if e["token_kind"] == "output") == counters["completion_tokens"]
    rate = Decimal("0.000075") / 1000
    assert sum(e["total_cost_nanos"] for e in events) == sum(cost_nanos(Decimal(e["quantity"]), rate) for e in events)


async def test_a_bad_argument_is_returned_to_the_model_not_run(asking, auth, fakes):
    fakes.update_script(
        llm_tool_calls=[
            {"name": "metrics_summary", "args": {"start": "yesterday", "end": "2025"}},
            {"name": "agent_analytics", "args": {"agent_id": "someone-elses"}},
        ],
        llm_replies=[],
    )
    body = await (await asking.post("/api/ask", json={"question": "q"}, headers=auth("alice"))).json()
    assert "metrics_summary returned" in body["answer"] and "error" in body["answer"]
    resp = await asking.post("/api/ask", json={"question": "q"}, headers=auth("alice"))
    assert resp.status == 200, await resp.text()
    assert "agent someone-elses not found" in (await resp.json())["answer"]


async def test_a_plain_answer_needs_no_function(asking, auth, fakes):
    fakes.update_script(llm_replies=["I can only answer about your data."])
    body = await (await asking.post("/api/ask", json={"question": "hi"}, headers=auth("alice"))).json()
    assert body["answer"] == "I can only answer about your data."


async def test_without_an_llm_key_ask_is_a_503_with_a_clear_error(client, auth):
    body = await assert_error(await client.post("/api/ask", json={"question": "q"}, headers=auth("alice")), 503)
    assert "VOXARENA_GOOGLE_API_KEY" in body["detail"] and body["error"] == "Service unavailable"
    await assert_error(await client.post("/api/ask", json={"question": ""}, headers=auth("alice")), 400)


async def test_a_failing_llm_is_a_502(asking, auth, fakes):
    fakes.fail(GEMINI, "reject")
    await assert_error(await asking.post("/api/ask", json={"question": "q"}, headers=auth("alice")), 502)
