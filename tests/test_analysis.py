"""Post-call analysis through the real Gemini plugin against the Gemini fake: structured output, one retry on
invalid output, failure stored with its reason, and the analysis's own tokens metered."""

from __future__ import annotations

import pytest
from livekit.agents import llm

from api.schemas.sessions import session_wire
from core.store import sessions as repo
from core.store import usage as ledger
from pipelines.builder import build_llm
from pipelines.config import AgentSpec, ProviderCredentials, ProvidersConfig
from pipelines.metering import CallMeter
from pipelines.pricing import PriceBook
from pipelines.providers import google as google_provider
from tests.api.seed import ANALYSIS, seed_call, tenant_of
from tests.fakes import FakeProviders
from worker.analysis import run_and_store
from worker.usage_sink import StoreUsageSink

SPEC = AgentSpec(
    id="a", name="a", system_prompt="", stt_provider="deepgram", llm_provider="gemini", tts_provider="elevenlabs"
)


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
    meter = CallMeter(
        PriceBook.load(),
        StoreUsageSink(store),
        owner_id=tenant_of("alice"),
        session_id=sid,
        agent_id=agent_id,
        stt_provider="deepgram",
        stt_model=None,
    )
    result = await run_and_store(store, sid, model, meter=meter)
    assert result is None  # both attempts invalid (not JSON, then a score outside 0..1)
    row = store.read_sync(lambda db: next(db.query("SELECT * FROM analyses WHERE session_id = ?", [sid])))
    assert row["status"] == "failed" and row["attempts"] == 2 and "sentiment_score" in row["error"]
    assert store.read_sync(repo.get_analysis, tenant_of("alice"), sid) is None
    tokens = store.read_sync(ledger.session_breakdown, tenant_of("alice"), sid)["events"]
    assert (
        sum(e["quantity"] for e in tokens if e["token_kind"] == "input") == fakes.counters()["gemini"]["prompt_tokens"]
    )

    fakes.update_script(llm_json_replies=["{broken", ANALYSIS])
    result = await run_and_store(store, sid, model)
    assert result is not None and result.model_dump() == ANALYSIS
    assert store.read_sync(repo.get_analysis, tenant_of("alice"), sid) == ANALYSIS


async def test_a_call_where_the_caller_never_spoke_is_skipped_not_run_and_not_billed(gemini, store):
    fakes, model = gemini
    agent_id, sid = seed_call(store, "alice", turns=0)
    # the agent greeted; the caller said nothing
    store.write_sync(
        lambda db: repo.append_item(
            db,
            session_id=sid,
            item_key="greeting",
            speaker="AGENT",
            content="Hello! How can I help?",
            timestamp="2026-11-22T10:00:00.000000Z",
        )
    )
    meter = CallMeter(
        PriceBook.load(),
        StoreUsageSink(store),
        owner_id=tenant_of("alice"),
        session_id=sid,
        agent_id=agent_id,
        stt_provider="deepgram",
        stt_model=None,
    )
    assert await run_and_store(store, sid, model, meter=meter) is None
    assert fakes.counters()["gemini"].get("requests", 0) == 0
    s = session_wire(store.read_sync(repo.get, tenant_of("alice"), sid))
    assert s["analysisStatus"] == "skipped" and "never spoke" in s["analysisError"] and s["analysis"] is None
    assert store.read_sync(repo.get_analysis, tenant_of("alice"), sid) is None
    assert store.read_sync(ledger.session_breakdown, tenant_of("alice"), sid)["events"] == []


FALLBACK = AgentSpec(
    id="a",
    name="a",
    system_prompt="",
    stt_provider="deepgram",
    llm_provider="gemini",
    tts_provider="elevenlabs",
    fallback_llm_providers=("openai",),
)


@pytest.fixture
async def chain(monkeypatch):
    """The agent's LLM as a call builds it: Gemini, then OpenAI, behind LiveKit's FallbackAdapter."""
    async with FakeProviders(api_key="k", script={"llm_default_json": ANALYSIS}) as fakes:
        monkeypatch.setenv("GOOGLE_GEMINI_BASE_URL", fakes.gemini_base_url)

        def creds(url):
            return ProviderCredentials("k", url)

        model, names = build_llm(
            FALLBACK, ProvidersConfig(google=creds(fakes.gemini_base_url), openai=creds(fakes.openai_base_url))
        )
        assert names == ("gemini", "openai") and isinstance(model, llm.FallbackAdapter)
        yield fakes, model
        await model.aclose()


def _analysed(store, sid: str) -> tuple[dict, list[dict]]:
    row = store.read_sync(lambda db: next(db.query("SELECT * FROM analyses WHERE session_id = ?", [sid])))
    return row, store.read_sync(ledger.session_breakdown, tenant_of("alice"), sid)["events"]


def _meter(store, agent_id: str, sid: str) -> CallMeter:
    return CallMeter(
        PriceBook.load(),
        StoreUsageSink(store),
        owner_id=tenant_of("alice"),
        session_id=sid,
        agent_id=agent_id,
        stt_provider="deepgram",
        stt_model=None,
    )


def _billed(events: list[dict], kind: str) -> int:
    return sum(e["quantity"] for e in events if e["token_kind"] == kind)


async def test_an_agent_with_a_fallback_llm_is_analysed_by_its_healthy_primary_and_billed_exactly(chain, store):
    fakes, model = chain
    agent_id, sid = seed_call(store, "alice")
    result = await run_and_store(store, sid, model, meter=_meter(store, agent_id, sid))
    assert result is not None and result.model_dump() == ANALYSIS
    row, events = _analysed(store, sid)
    assert row["status"] == "completed" and row["attempts"] == 1
    c = fakes.counters()
    assert c["gemini"]["json_requests"] == 1 and c["openai"].get("requests", 0) == 0
    assert {e["provider"] for e in events} == {"gemini"} and all(e["priced"] for e in events)
    assert _billed(events, "input") == c["gemini"]["prompt_tokens"] > 0
    assert _billed(events, "output") == c["gemini"]["completion_tokens"] > 0


async def test_when_the_primary_llm_fails_the_fallback_analyses_the_call_and_is_billed_for_it(chain, store):
    fakes, model = chain
    fakes.fail("gemini", "reject")
    agent_id, sid = seed_call(store, "alice")
    result = await run_and_store(store, sid, model, meter=_meter(store, agent_id, sid))
    assert result is not None and result.model_dump() == ANALYSIS
    row, events = _analysed(store, sid)
    assert row["status"] == "completed" and row["attempts"] == 1 and row["error"] is None
    c = fakes.counters()
    assert c["gemini"]["injected_failures"] >= 1 and c["gemini"].get("completed", 0) == 0
    assert c["openai"]["json_requests"] == c["openai"]["completed"] == 1
    assert {(e["provider"], e["model"]) for e in events} == {("openai", "gpt-4o-mini")}
    assert _billed(events, "input") == c["openai"]["prompt_tokens"] > 0
    assert _billed(events, "output") == c["openai"]["completion_tokens"] > 0


async def test_when_every_llm_fails_the_analysis_fails_naming_each_and_bills_nothing(chain, store):
    fakes, model = chain
    fakes.fail("gemini", "reject")
    fakes.fail("openai", "reject")
    agent_id, sid = seed_call(store, "alice")
    assert await run_and_store(store, sid, model, meter=_meter(store, agent_id, sid)) is None
    row, events = _analysed(store, sid)
    assert row["status"] == "failed" and row["attempts"] == 2, row
    assert row["error"].startswith("LLM request failed: Gemini") and "then openai gpt-4o-mini" in row["error"], row
    assert events == []
