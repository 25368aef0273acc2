"""Post-call analysis through the real Gemini plugin against the Gemini fake: structured output, one retry on
invalid output, failure stored with its reason, and the analysis's own tokens metered."""

from __future__ import annotations

from api.schemas.sessions import session_wire

from tests.api.seed import tenant_of

import pytest

from api.store import sessions as repo
from api.store import usage as ledger
from pipelines.config import AgentSpec, ProviderCredentials, ProvidersConfig
from pipelines.metering import CallMeter
from pipelines.pricing import PriceBook
from pipelines.providers import google as google_provider
from tests.api.seed import ANALYSIS, seed_call
from tests.fakes import FakeProviders
from worker.analysis import run_and_store
from worker.usage_sink import StoreUsageSink

SPEC = AgentSpec(id="a", name="a", system_prompt="", stt_provider="deepgram", llm_provider="gemini",
                 tts_provider="elevenlabs")


@pytest.fixture
async def gemini(monkeypatch):
    async with FakeProviders(api_key="k") as fakes:
        monkeypatch.setenv("GOOGLE_GEMINI_BASE_URL", fakes.gemini_base_url)
        model = google_provider.llm(SPEC, ProvidersConfig(google=ProviderCredentials("k", fakes.gemini_base_url)))
        yield fakes, model


async def test_invalid_output_is_retried_once_then_the_analysis_is_stored(gemini, store):
    fakes, model = gemini
    fakes.update_script(llm_json_replies=["this is not json", {**ANALYSIS, "sentiment_score": 7}, ANALYSIS])
    agent_id, sid = seed_call(store, "alice")
    meter = CallMeter(PriceBook.load(), StoreUsageSink(store), owner_id=tenant_of("alice"), session_id=sid, agent_id=agent_id,
                      stt_provider="deepgram", stt_model=None)
    result = await run_and_store(store, sid, model, meter=meter)
    assert result is None  # both attempts invalid (not JSON, then a score outside 0..1)
    row = store.read_sync(lambda db: next(db.query("SELECT * FROM analyses WHERE session_id = ?", [sid])))
    assert row["status"] == "failed" and row["attempts"] == 2 and "sentiment_score" in row["error"]
    assert store.read_sync(repo.get_analysis, tenant_of("alice"), sid) is None
    tokens = store.read_sync(ledger.session_breakdown, tenant_of("alice"), sid)["events"]
    assert sum(e["quantity"] for e in tokens if e["token_kind"] == "input") == fakes.counters()["gemini"]["prompt_tokens"]

    fakes.update_script(llm_json_replies=["{broken", ANALYSIS])
    result = await run_and_store(store, sid, model)
    assert result is not None and result.model_dump() == ANALYSIS
    assert store.read_sync(repo.get_analysis, tenant_of("alice"), sid) == ANALYSIS


async def test_a_call_where_the_caller_never_spoke_is_skipped_not_run_and_not_billed(gemini, store):
    fakes, model = gemini
    agent_id, sid = seed_call(store, "alice", turns=0)
    # the agent greeted; the caller said nothing
    store.write_sync(lambda db: repo.append_item(db, session_id=sid, item_key="greeting", speaker="AGENT",
                                                 content="Hello! How can I help?", timestamp="2026-11-22T10:00:00.000000Z"))
    meter = CallMeter(PriceBook.load(), StoreUsageSink(store), owner_id=tenant_of("alice"), session_id=sid, agent_id=agent_id,
                      stt_provider="deepgram", stt_model=None)
    assert await run_and_store(store, sid, model, meter=meter) is None
    assert fakes.counters()["gemini"].get("requests", 0) == 0
    s = session_wire(store.read_sync(repo.get, tenant_of("alice"), sid))
    assert s["analysisStatus"] == "skipped" and "never spoke" in s["analysisError"] and s["analysis"] is None
    assert store.read_sync(repo.get_analysis, tenant_of("alice"), sid) is None
    assert store.read_sync(ledger.session_breakdown, tenant_of("alice"), sid)["events"] == []
