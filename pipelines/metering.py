"""Inline metering: usage turned into priced events while the call runs.

- STT minutes come from the audio each provider's socket accepted (``wire_meter``: counted only after a send
  succeeded), not from the plugins' usage reports, which under-report short calls, nor from audio handed to a
  plugin whose provider never received it.
- TTS characters come from what each provider was sent (``wire_meter.TextWire``: the text its plugin put on the
  wire, after the plugin's own re-tokenising, counted once a send succeeded), not from the reply text the session
  reports, which differs by a space per sentence break and misses text sent for a reply cut short.
- LLM tokens (input and output apart) come from the session's cumulative usage; each report becomes the delta since
  the previous one.
- Every event carries an idempotency key derived from the cumulative counters it covers (``.../0-480000``), so a
  retried or replayed write is the same event and the ledger (an upsert on the key) never counts it twice.
- Events go to a ``UsageSink``; the worker wires it to the store. Nothing here knows about HTTP or SQL.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, fields
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any, Protocol

from .pricing import PriceBook, Unpriced, cost_nanos
from .wire_meter import MeteredSession, TextWire

log = logging.getLogger("voxarena.metering")

QUANTUM = Decimal("1e-12")  # minutes are kept to 12 decimals (60 ps): exact enough, and bounded in size
KEY_NAMESPACE = uuid.UUID("6f1c1e9c-8f6e-4d4e-9a51-5b2a3c6d7e80")

UNITS = {
    "stt_minutes": "minute",
    "llm_tokens": "token",
    "tts_characters": "character",
    "sip_minutes": "minute",
    "storage_minutes": "minute",
}


@dataclass(frozen=True)
class UsageEvent:
    id: str
    idempotency_key: str
    owner_id: str
    session_id: str | None
    agent_id: str | None
    provider: str
    model: str | None
    event_type: str
    token_kind: str | None
    quantity: Decimal
    unit: str
    unit_cost: Decimal | None
    total_cost_nanos: int | None
    price_version: str | None
    occurred_at: datetime
    source: str

    @property
    def priced(self) -> bool:
        return self.total_cost_nanos is not None

    def as_dict(self) -> dict[str, Any]:
        # Shallow on purpose: dataclasses.asdict deep-copies every field, which dominated ingest time.
        return {name: getattr(self, name) for name in _FIELDS}


_FIELDS = tuple(f.name for f in fields(UsageEvent))


def event_id(owner_id: str, key: str) -> str:
    """The event id is a function of the key, so the same usage always lands on the same row."""
    return str(uuid.uuid5(KEY_NAMESPACE, f"{owner_id}\x00{key}"))


def make_event(
    book: PriceBook,
    *,
    key: str,
    owner_id: str,
    session_id: str | None,
    agent_id: str | None,
    provider: str,
    model: str | None,
    event_type: str,
    quantity: Decimal,
    token_kind: str | None = None,
    at: datetime | None = None,
    source: str = "worker",
) -> UsageEvent:
    at = at or datetime.now(UTC)
    provider_key = book.provider_key(provider)
    try:
        quote = book.quote(provider=provider_key, event_type=event_type, model=model, token_kind=token_kind, at=at)
        unit_cost, total, version = quote.unit_cost, cost_nanos(quantity, quote.unit_cost), quote.price_version
    except Unpriced as e:
        log.warning("unpriced usage recorded: %s", e)
        unit_cost, total, version = None, None, None
    return UsageEvent(
        id=event_id(owner_id, key),
        idempotency_key=key,
        owner_id=owner_id,
        session_id=session_id,
        agent_id=agent_id,
        provider=provider_key,
        model=model,
        event_type=event_type,
        token_kind=token_kind,
        quantity=quantity,
        unit=UNITS[event_type],
        unit_cost=unit_cost,
        total_cost_nanos=total,
        price_version=version,
        occurred_at=at,
        source=source,
    )


class UsageSink(Protocol):
    async def record(self, events: list[UsageEvent]) -> None:
        """Returns once the events are durable (in the ledger, or spilled for the next start); raises otherwise."""


SttKey = tuple[str, "str | None", int]  # (provider, model, sample rate)
UsageKey = tuple[str, str, str]  # (provider, model or "", counter)


class CallMeter:
    """Meters one call. Thread-compatible only with its own event loop (one meter per job).

    Nothing advances before the sink acknowledged it: the marks of what is in the ledger move only after a write
    returned, so a failed write leaves its usage to the next flush (same ranges, same keys: never doubled), and two
    flushes never compute overlapping ranges (they run one at a time, from the latest counters)."""

    def __init__(
        self,
        book: PriceBook,
        sink: UsageSink,
        *,
        owner_id: str,
        session_id: str,
        agent_id: str,
        stt_provider: str | None = None,
        stt_model: str | None = None,
        stt_flush_seconds: float = 1.0,
        key_scope: str | None = None,
    ) -> None:
        self.book = book
        # Keys are scoped to the job as well as the session: a job re-dispatched into the same call after a crash
        # meters new usage from zero, and must not collide with the keys of what the dead job already recorded.
        self.scope = key_scope or session_id
        self.sink = sink
        self.owner_id = owner_id
        self.session_id = session_id
        self.agent_id = agent_id
        self.stt_provider = stt_provider
        self.stt_model = stt_model
        self.stt_flush_seconds = stt_flush_seconds
        # STT audio the providers accepted: cumulative samples, and how many of them are in the ledger.
        self._samples: dict[SttKey, int] = {}
        self._flushed: dict[SttKey, int] = {}
        # Cumulative usage (LLM tokens the session reported, TTS characters the wire carried), and how much of it is
        # in the ledger.
        self._reported: dict[UsageKey, int] = {}
        self._seen: dict[UsageKey, int] = {}
        self._pending: set[asyncio.Future[None]] = set()
        self._running: set[str] = set()
        self._again: set[str] = set()
        self._lock = asyncio.Lock()
        self.failed_writes = 0

    # ---- STT: the audio each provider accepted ----
    def stt_http_session(self, base: Any, *, provider: str, sample_rate: int) -> MeteredSession:
        """The ``http_session`` for one STT plugin: its websockets report the 16-bit PCM they delivered."""
        session = MeteredSession(
            base, lambda nbytes: self.on_stt_audio(nbytes // 2, sample_rate, provider=provider, model=session.model)
        )
        return session

    def on_stt_audio(
        self, samples: int, sample_rate: int, *, provider: str | None = None, model: str | None = None
    ) -> None:
        key = (provider or self.stt_provider or "unknown", model if provider else self.stt_model, sample_rate)
        self._samples[key] = self._samples.get(key, 0) + samples
        if self._samples[key] - self._flushed.get(key, 0) >= sample_rate * self.stt_flush_seconds:
            self._kick("stt")

    def stt_seconds(self) -> Decimal:
        return sum((Decimal(n) / key[2] for key, n in self._samples.items()), Decimal(0))

    def _stt_events(self) -> tuple[list[UsageEvent], dict[SttKey, int]]:
        """Events for the audio not yet in the ledger, and the marks to advance once they are written."""
        events, marks = [], {}
        for key, total in list(self._samples.items()):
            provider, model, rate = key
            start = self._flushed.get(key, 0)
            if total <= start:
                continue
            minutes = (Decimal(total - start) / Decimal(rate * 60)).quantize(QUANTUM)
            events.append(
                self._event(
                    f"{self.scope}/stt/{provider}/{rate}/{start}-{total}", provider, model, "stt_minutes", minutes
                )
            )
            marks[key] = total
        return events, marks

    async def flush_stt(self) -> None:
        async with self._lock:
            events, marks = self._stt_events()
            await self._write(events)
            self._flushed.update(marks)

    # ---- TTS: the characters each provider was sent ----
    def tts_wire(self, base: Any, *, provider: str) -> TextWire:
        """What one TTS provider's plugin is built with (``wire=``): its sends report the characters they carried."""
        return TextWire(
            base, lambda model, characters: self.on_tts_characters(characters, provider=provider, model=model)
        )

    def on_tts_characters(self, characters: int, *, provider: str, model: str | None) -> None:
        key = (provider, model or "", "characters")
        self._reported[key] = self._reported.get(key, 0) + characters
        self._kick("usage")

    # ---- LLM: cumulative usage reports from the session ----
    def note_usage(self, model_usage: Iterable[Any]) -> None:
        """Keep the latest cumulative counters of a usage report (a late or repeated report never goes back)."""
        for u in model_usage:
            kind = getattr(u, "type", "")
            provider = str(getattr(u, "provider", "") or "unknown")
            model = str(getattr(u, "model", "") or "")
            if kind == "llm_usage":
                counters = (("input", u.input_tokens), ("output", u.output_tokens))
            else:  # STT and TTS are metered on the wire; EOT/interruption models are local and free
                continue
            for counter, cumulative in counters:
                key = (provider, model, counter)
                self._reported[key] = max(self._reported.get(key, 0), int(cumulative or 0))

    def _usage_events(self) -> tuple[list[UsageEvent], dict[UsageKey, int]]:
        events, marks = [], {}
        for key, cumulative in list(self._reported.items()):
            provider, model, counter = key
            before = self._seen.get(key, 0)
            if cumulative <= before:
                continue
            event_type = "tts_characters" if counter == "characters" else "llm_tokens"
            events.append(
                self._event(
                    f"{self.scope}/{event_type}/{provider}/{model or '*'}/{counter}/{before}-{cumulative}",
                    provider,
                    model or None,
                    event_type,
                    Decimal(cumulative - before),
                    token_kind=counter if event_type == "llm_tokens" else None,
                )
            )
            marks[key] = cumulative
        return events, marks

    def usage_events(self, model_usage: Iterable[Any]) -> list[UsageEvent]:
        """The events a report adds beyond what the ledger has (nothing is marked written)."""
        self.note_usage(model_usage)
        return self._usage_events()[0]

    def on_usage(self, model_usage: Iterable[Any]) -> None:
        self.note_usage(model_usage)
        self._kick("usage")

    async def flush_usage(self) -> None:
        async with self._lock:
            events, marks = self._usage_events()
            await self._write(events)
            self._seen.update(marks)

    async def record_llm_call(
        self, *, key: str, provider: str, model: str | None, input_tokens: int, output_tokens: int
    ) -> None:
        """Usage of an LLM call made outside the session (the post-call analysis)."""
        events = [
            self._event(
                f"{self.scope}/{key}/input", provider, model, "llm_tokens", Decimal(input_tokens), token_kind="input"
            ),
            self._event(
                f"{self.scope}/{key}/output", provider, model, "llm_tokens", Decimal(output_tokens), token_kind="output"
            ),
        ]
        async with self._lock:
            await self._write([e for e in events if e.quantity > 0])

    async def record_sip_minutes(self, *, carrier: str, trunk: str | None, answered_ms: int, leg: str = "sip") -> None:
        """A phone line of the call: its answered time, priced per carrier (and trunk). `leg` tells the call's lines
        apart in the usage key: the caller's (``sip``), a warm transfer's human (``transfer-<n>``)."""
        minutes = (Decimal(answered_ms) / Decimal(60_000)).quantize(QUANTUM)
        if minutes <= 0:
            return
        async with self._lock:
            await self._write([self._event(f"{self.scope}/{leg}", carrier, trunk, "sip_minutes", minutes)])

    async def record_storage_minutes(self, *, storage: str, recorded_ms: int) -> None:
        """The call's recording: its length, priced per storage (``local``: the data dir) when a rate is set."""
        minutes = (Decimal(recorded_ms) / Decimal(60_000)).quantize(QUANTUM)
        if minutes <= 0:
            return
        async with self._lock:
            await self._write([self._event(f"{self.scope}/recording", storage, None, "storage_minutes", minutes)])

    # ---- plumbing ----
    def _event(
        self,
        key: str,
        provider: str,
        model: str | None,
        event_type: str,
        quantity: Decimal,
        token_kind: str | None = None,
    ) -> UsageEvent:
        return make_event(
            self.book,
            key=key,
            owner_id=self.owner_id,
            session_id=self.session_id,
            agent_id=self.agent_id,
            provider=provider,
            model=model,
            event_type=event_type,
            quantity=quantity,
            token_kind=token_kind,
        )

    async def _write(self, events: list[UsageEvent]) -> None:
        if not events:
            return
        try:
            await self.sink.record(events)
        except Exception:
            self.failed_writes += 1
            log.exception(
                "could not record %d usage events for session %s; they stay pending", len(events), self.session_id
            )
            raise

    def _kick(self, what: str) -> None:
        """One flush task per kind at a time; usage arriving during a flush triggers one more pass after it."""
        if what in self._running:
            self._again.add(what)
            return
        self._running.add(what)
        fut = asyncio.ensure_future(self._drain(what))
        self._pending.add(fut)
        fut.add_done_callback(self._pending.discard)

    async def _drain(self, what: str) -> None:
        flush = self.flush_stt if what == "stt" else self.flush_usage
        try:
            while True:
                self._again.discard(what)
                await flush()
                if what not in self._again:
                    return
        except Exception:
            pass  # logged by _write; the marks did not move, so the next flush (or close) writes it
        finally:
            self._running.discard(what)

    async def close(self, final_usage: Iterable[Any] = ()) -> None:
        """At the end of the call: the last usage report (which the plugins deliver late) and the last audio."""
        if self._pending:
            await asyncio.gather(*list(self._pending), return_exceptions=True)
        self.note_usage(final_usage)
        async with self._lock:
            usage, usage_marks = self._usage_events()
            stt, stt_marks = self._stt_events()
            await self._write(usage + stt)
            self._seen.update(usage_marks)
            self._flushed.update(stt_marks)
