"""The ledger after real calls matches what the provider fakes themselves counted."""

from __future__ import annotations

from decimal import Decimal

from pipelines.pricing import PriceBook
from tests.e2e.test_voice_calls import _agent, _call, _ended_with_analysis

BOOK = PriceBook.load()


def _requests(log: list[dict]) -> str:
    """The LLM requests the fake answered, one line each: what a count that differs is made of."""
    from tests.fakes.gemini import prompt_tokens

    lines = []
    for entry in log:
        body = entry["request"]
        last = (body.get("contents") or [{}])[-1].get("parts") or [{}]
        text = str(last[0].get("text", ""))[:60]
        lines.append(f"json={entry['json_mode']} prompt={prompt_tokens(body)} last={text!r}")
    return "the fake's requests:\n" + "\n".join(lines)


def _usd(rate: str, quantity: Decimal) -> Decimal:
    return Decimal(rate) * quantity


async def test_the_ledger_matches_the_providers_own_counts_to_the_cent(voice_stack):
    product, _, fakes = voice_stack
    user = "ledger-user"
    agent_id = await _agent(product, user)
    await product.wait_settled()  # an earlier test's call, or its analysis, would be counted by the fakes
    fakes.reset()
    sessions = []
    for turns in (1, 2):
        session_id, _ = await _call(product, agent_id, user=user, turns=turns)
        sessions.append(session_id)
    for sid in sessions:
        await product.wait_session(sid, user, _ended_with_analysis, timeout=45, what="ended and analysed")
    counted = fakes.counters()

    events = []
    for sid in sessions:
        status, breakdown = await product.request("GET", f"/api/sessions/{sid}/cost-breakdown", user)
        assert status == 200
        assert breakdown["total_cost_nanos"] == sum(e["total_cost_nanos"] for e in breakdown["events"])
        events += breakdown["events"]
    assert events and all(e["priced"] for e in events)
    assert len({e["idempotency_key"] for e in events}) == len(events)

    def qty(event_type, provider, kind=None):
        return sum(
            Decimal(str(e["quantity"]))
            for e in events
            if e["event_type"] == event_type and e["provider"] == provider and (kind is None or e["token_kind"] == kind)
        )

    stt_seconds = qty("stt_minutes", "deepgram") * 60
    chars = qty("tts_characters", "elevenlabs")
    fake_seconds = Decimal(str(counted["deepgram"]["audio_seconds"]))
    assert (
        fake_seconds > 5 and counted["gemini"]["completion_tokens"] > 0 and counted["elevenlabs_tts"]["characters"] > 0
    )
    assert abs(stt_seconds - fake_seconds) <= fake_seconds * Decimal("0.01"), (stt_seconds, fake_seconds)
    print(
        f"STT ledger {stt_seconds:.3f}s vs provider {fake_seconds:.3f}s; tokens in/out "
        f"{qty('llm_tokens', 'gemini', 'input')}/{qty('llm_tokens', 'gemini', 'output')}; "
        f"characters {chars} vs {counted['elevenlabs_tts']['characters']}"
    )
    assert qty("llm_tokens", "gemini", "input") == counted["gemini"]["prompt_tokens"], _requests(fakes.log("gemini"))
    assert qty("llm_tokens", "gemini", "output") == counted["gemini"]["completion_tokens"]
    assert chars == counted["elevenlabs_tts"]["characters"]  # metered from what the TTS was sent

    ledger = sum(Decimal(e["total_cost_nanos"]) for e in events) / 10**9
    provider_side = (
        _usd("0.0043", fake_seconds / 60)
        + _usd("0.000075", Decimal(counted["gemini"]["total_tokens"]) / 1000)
        + _usd("0.00005", Decimal(counted["elevenlabs_tts"]["characters"]))
    )
    assert abs(ledger - provider_side) < Decimal("0.005"), (ledger, provider_side)
    print(f"ledger ${ledger} vs provider-side ${provider_side:.9f}")

    status, summary = await product.request("GET", "/api/costs/summary", user)
    assert summary["total_cost_nanos"] == sum(e["total_cost_nanos"] for e in events)
    status, by_agent = await product.request("GET", "/api/costs/by-agent", user)
    assert by_agent[0]["agent_id"] == agent_id and by_agent[0]["session_count"] == 2
    assert by_agent[0]["total_cost_nanos"] == summary["total_cost_nanos"]
