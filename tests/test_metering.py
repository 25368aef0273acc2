from __future__ import annotations

import asyncio
import itertools
from decimal import Decimal
from pathlib import Path
from types import SimpleNamespace

import pytest

from core.store import usage as ledger
from pipelines.metering import CallMeter
from pipelines.pricing import PriceBook
from tests.api.seed import seed_call

BOOK = PriceBook.load()


class ListSink:
    def __init__(self, fail_first: int = 0) -> None:
        self.events = []
        self.fail_first = fail_first

    async def record(self, events):
        if self.fail_first:
            self.fail_first -= 1
            raise RuntimeError("disk on fire")
        self.events += events


def meter(sink, session_id="s1", **kw):
    return CallMeter(
        BOOK,
        sink,
        owner_id="alice",
        session_id=session_id,
        agent_id="a1",
        stt_provider="deepgram",
        stt_model="nova-3",
        key_scope=f"{session_id}/job1",
        **kw,
    )


async def test_stt_minutes_follow_the_audio_streamed_exactly_and_flush_every_second():
    sink = ListSink()
    m = meter(sink)
    for _ in range(350):  # 3.5 s of 10 ms frames at 48 kHz, the loop running between frames as in a call
        m.on_stt_audio(480, 48000)
        await asyncio.sleep(0)
    await m.close()
    minutes = sum(e.quantity for e in sink.events)
    assert abs(minutes - Decimal("3.5") / 60) < Decimal("1e-11")  # minutes are kept to 12 decimals
    assert len(sink.events) == 4  # 1 s, 1 s, 1 s, then the last half second at close
    ranges = [e.idempotency_key.rsplit("/", 1)[1] for e in sink.events]
    assert ranges == ["0-48000", "48000-96000", "96000-144000", "144000-168000"]
    assert sum(e.total_cost_nanos for e in sink.events) == pytest.approx(
        int(Decimal("0.0043") * Decimal("3.5") / 60 * 10**9), abs=4
    )


def usage(llm_in, llm_out, chars):
    return [
        SimpleNamespace(
            type="llm_usage", provider="Gemini", model="gemini-2.5-flash", input_tokens=llm_in, output_tokens=llm_out
        ),
        SimpleNamespace(type="tts_usage", provider="ElevenLabs", model="eleven_turbo_v2_5", characters_count=chars),
    ]


def sent(m, chars):
    """Characters the TTS provider was sent (its wire reports them; see test_wire_meter)."""
    m.on_tts_characters(chars, provider="elevenlabs", model="eleven_turbo_v2_5")


async def test_cumulative_usage_becomes_deltas_and_a_repeat_report_adds_nothing():
    sink = ListSink()
    m = meter(sink)
    m.on_usage(usage(100, 20, 999))  # the session's TTS count is the reply text's: not what is billed
    sent(m, 50)
    await m.flush_usage()
    m.on_usage(usage(100, 20, 999))
    m.on_usage(usage(90, 20, 999))  # a late, older report never goes back
    await m.flush_usage()
    assert len(sink.events) == 3
    sent(m, 40)
    await m.close(usage(180, 35, 999))
    assert sorted((e.event_type, e.token_kind or "", e.quantity) for e in sink.events) == [
        ("llm_tokens", "input", 80),
        ("llm_tokens", "input", 100),
        ("llm_tokens", "output", 15),
        ("llm_tokens", "output", 20),
        ("tts_characters", "", 40),
        ("tts_characters", "", 50),
    ]
    assert {e.provider for e in sink.events} == {"gemini", "elevenlabs"}


async def test_usage_through_a_failing_sink_is_recorded_exactly_once_after_it_recovers():
    sink = ListSink(fail_first=3)
    m = meter(sink)
    for i in range(1, 61):  # reports racing with flushes (and their failures), audio in between
        m.on_usage(usage(10 * i, 2 * i, 5 * i))
        sent(m, 5)
        m.on_stt_audio(1600, 16000)  # 0.1 s
        if i % 7 == 0:
            await asyncio.sleep(0)
    await m.close(usage(600, 120, 300))
    assert m.failed_writes >= 1
    keys = [e.idempotency_key for e in sink.events]
    assert len(keys) == len(set(keys))

    def total(event_type, kind=None):
        return sum(e.quantity for e in sink.events if e.event_type == event_type and e.token_kind == kind)

    assert (total("llm_tokens", "input"), total("llm_tokens", "output"), total("tts_characters")) == (600, 120, 300)
    assert abs(total("stt_minutes") * 60 - 6) < Decimal("1e-9")  # minutes are kept to 12 decimals
    for event_type in ("llm_tokens", "tts_characters", "stt_minutes"):  # ranges tile, never overlap
        by_counter: dict[str, list[tuple[int, int]]] = {}
        for e in sink.events:
            if e.event_type == event_type:
                prefix, rng = e.idempotency_key.rsplit("/", 1)
                by_counter.setdefault(prefix, []).append(tuple(map(int, rng.split("-"))))
        for ranges in by_counter.values():
            ranges.sort()
            assert ranges[0][0] == 0 and all(a[1] == b[0] for a, b in itertools.pairwise(ranges)), ranges


async def test_a_failed_write_is_retried_with_the_same_audio_and_never_doubles(store):
    sink = ListSink(fail_first=1)
    _, session_id = seed_call(store, "alice")
    m = meter(sink, session_id=session_id)
    for _ in range(100):
        m.on_stt_audio(480, 48000)
    with pytest.raises(RuntimeError):
        await m.flush_stt()
    await m.close()
    assert m.failed_writes == 1
    assert abs(sum(e.quantity for e in sink.events) * 60 - 1) < Decimal("1e-9")
    assert [e.idempotency_key.rsplit("/", 1)[1] for e in sink.events] == ["0-48000"]
    rows = [e.as_dict() for e in sink.events]
    assert store.write_sync(ledger.record_events, rows) == [True] * len(rows)
    assert store.write_sync(ledger.record_events, rows) == [False] * len(rows)  # a replay changes nothing


async def test_usage_of_an_unpriced_provider_is_flagged_not_zeroed():
    m = meter(ListSink())
    (e,) = m.usage_events(
        [SimpleNamespace(type="llm_usage", provider="OpenAI", model="gpt", input_tokens=5, output_tokens=0)]
    )
    assert e.priced is False and e.total_cost_nanos is None and e.unit_cost is None


async def test_an_answered_line_is_one_sip_minutes_event_priced_per_carrier_and_trunk(tmp_path):
    import yaml

    spec = yaml.safe_load((Path(__file__).resolve().parents[1] / "pricing.yaml").read_text())
    spec["prices"].append(
        {
            "provider": "telnyx",
            "event_type": "sip_minutes",
            "model": "ST_line",
            "unit": "minute",
            "rate": "0.0070",
            "effective_from": "2024-01-01",
        }
    )
    path = tmp_path / "pricing.yaml"
    path.write_text(yaml.safe_dump(spec))
    sink = ListSink()
    m = CallMeter(
        PriceBook.load(path),
        sink,
        owner_id="t",
        session_id="s",
        agent_id="a",
        stt_provider="deepgram",
        stt_model=None,
        key_scope="s/j",
    )
    await m.record_sip_minutes(carrier="telnyx", trunk="ST_line", answered_ms=90_000)
    await m.record_sip_minutes(carrier="telnyx", trunk="ST_line", answered_ms=90_000)  # a retry: same key
    await m.record_sip_minutes(carrier="sip", trunk="ST_other", answered_ms=30_000)
    line, other = sink.events[0], sink.events[-1]
    assert (line.event_type, line.quantity, line.total_cost_nanos) == ("sip_minutes", Decimal("1.5"), 10_500_000)
    assert line.idempotency_key == sink.events[1].idempotency_key
    assert other.total_cost_nanos is None  # no rate for that carrier: unpriced, never 0
    # a warm transfer's human: a line of its own, under its own key, priced like any line of that carrier
    await m.record_sip_minutes(carrier="telnyx", trunk="ST_line", answered_ms=30_000, leg="transfer-1")
    human = sink.events[-1]
    assert (human.quantity, human.total_cost_nanos) == (Decimal("0.5"), 3_500_000)
    assert human.idempotency_key not in {e.idempotency_key for e in sink.events[:-1]}
