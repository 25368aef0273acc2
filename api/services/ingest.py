"""Ingest of 004's external events: each item validated on its own, priced against the price book, keyed for
idempotency, and stored with the valid others in one write."""

from __future__ import annotations

import asyncio
import hashlib
import json
import uuid
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from pydantic import BaseModel, ValidationError

from core.store import ingest as repo
from core.store.db import Store
from core.store.timefmt import to_iso
from pipelines.pricing import PriceBook, Unpriced, to_nanos, usd

from ..errors import BadRequest
from ..schemas.ingest import CostEventIn, OutreachEventIn

MAX_ITEMS = 10_000


class IngestRefused(BadRequest):
    """Every item of the request was refused (or there was none): nothing was stored."""

    type = "invalid_events"


def parse_items(raw: bytes) -> list[Any]:
    """The request body as a list of items: a JSON array, or one object. Numbers with a fraction stay exact."""
    try:
        data = json.loads(raw, parse_float=Decimal) if raw.strip() else None
    except (ValueError, UnicodeDecodeError) as e:
        raise BadRequest(f"request body is not valid JSON: {e}") from None
    if isinstance(data, dict):
        data = [data]
    if not isinstance(data, list):
        raise BadRequest("request body must be a JSON array of events (or one event object)")
    if not data:
        raise IngestRefused("request body has no events")
    if len(data) > MAX_ITEMS:
        raise BadRequest(f"at most {MAX_ITEMS} events per request")
    return data


def item_error(e: ValidationError) -> str:
    """004's reason for a refused item, e.g. "Missing required field: provider"."""
    problems = []
    for err in e.errors(include_url=False, include_context=False, include_input=False):
        where = ".".join(str(p) for p in err["loc"]) or "item"
        problems.append(f"Missing required field: {where}" if err["type"] == "missing" else f"{where}: {err['msg']}")
    return "; ".join(problems)


def _hash(item: Any) -> str:
    return hashlib.sha256(json.dumps(item, sort_keys=True, default=str).encode()).hexdigest()


def _at(value: datetime | None) -> datetime:
    if value is None:
        return datetime.now(UTC)
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


def _validate(items: list[Any], model: type[BaseModel]) -> tuple[list[tuple[int, Any, BaseModel]], list[dict]]:
    valid, errors = [], []
    for index, item in enumerate(items):
        if not isinstance(item, dict):
            errors.append({"index": index, "error": "an event must be a JSON object"})
            continue
        try:
            valid.append((index, item, model.model_validate(item)))
        except ValidationError as e:
            errors.append({"index": index, "error": item_error(e)})
    return valid, errors


def priced_nanos(
    book: PriceBook, provider: str, model: str | None, tokens_in: int, tokens_out: int, at: datetime
) -> tuple[int | None, str | None]:
    """The price book's cost of these tokens (one rounding, half-even), or None when it has no price for them."""
    total, version = Decimal(0), None
    try:
        for kind, tokens in (("input", tokens_in), ("output", tokens_out)):
            quote = book.quote(provider=provider, event_type="llm_tokens", model=model, token_kind=kind, at=at)
            total += Decimal(tokens) * quote.unit_cost
            version = quote.price_version
    except Unpriced:
        return None, None
    return to_nanos(total), version


def _answer(
    items: list[Any],
    valid: list[tuple[int, Any, BaseModel]],
    stored: Sequence[tuple[str, dict[str, Any]]],
    errors: list[dict],
    result: Callable[[int, dict, bool], dict],
) -> dict[str, Any]:
    results = []
    for (index, _, _), (outcome, row) in zip(valid, stored, strict=True):
        if outcome == "conflict":
            errors.append({"index": index, "error": "Idempotency-Key was already used with a different event"})
        else:
            results.append(result(index, row, outcome == "duplicate"))
    errors.sort(key=lambda e: e["index"])
    if not results:
        first = errors[0]
        raise IngestRefused(f"no event was stored; item {first['index']}: {first['error']}", errors=errors)
    inserted = sum(1 for outcome, _ in stored if outcome == "inserted")
    return {
        "success": not errors,
        "inserted": inserted,
        "duplicates": len(results) - inserted,
        "errors": len(errors),
        "error_details": errors,
        "results": results,
    }


async def ingest_costs(
    store: Store, book: PriceBook, owner_id: str, raw: bytes, *, idempotency_key: str | None, source: str
) -> dict[str, Any]:
    # Parsing, validating and pricing up to MAX_ITEMS items is CPU work: off the event loop.
    items, valid, errors, rows, ledger = await asyncio.to_thread(
        _prepare_costs, book, owner_id, raw, idempotency_key, source
    )
    stored = await store.write(repo.record_costs, owner_id, rows, ledger) if rows else []

    def result(index: int, row: dict, duplicate: bool) -> dict:
        return {
            "id": row["id"],
            "provider": row["provider"],
            "model": row["model"],
            "cost_usd": _usd(row["cost_nanos"]),
            "index": index,
            "duplicate": duplicate,
            "reported_cost_usd": _usd(row["reported_cost_nanos"]),
            "priced_cost_usd": _usd(row["priced_cost_nanos"]),
            "cost_nanos": row["cost_nanos"],
        }

    return _answer(items, valid, stored, errors, result)


def _prepare_costs(
    book: PriceBook, owner_id: str, raw: bytes, idempotency_key: str | None, source: str
) -> tuple[list[Any], list[tuple[int, Any, BaseModel]], list[dict], list[dict], list[dict]]:
    items = parse_items(raw)
    valid, errors = _validate(items, CostEventIn)
    rows, ledger = [], []
    for index, item, ev in valid:
        assert isinstance(ev, CostEventIn)
        at = _at(ev.occurred_at)
        provider = book.provider_key(ev.provider)
        priced, version = priced_nanos(book, provider, ev.model, ev.tokens_in, ev.tokens_out, at)
        reported = None if ev.cost_usd is None else to_nanos(ev.cost_usd)
        cost = reported if reported is not None else priced
        event_id = str(uuid.uuid4())
        natural = None
        if ev.workflow_id and ev.run_id:
            natural = "\x1f".join([ev.workflow_id, ev.run_id, provider, ev.model or "", ev.purpose or ""])
        rows.append(
            {
                "id": event_id,
                "idempotency_key": f"{idempotency_key}#{index}" if idempotency_key else None,
                "natural_key": natural,
                "item_hash": _hash(item),
                "provider": provider,
                "model": ev.model,
                "tokens_in": ev.tokens_in,
                "tokens_out": ev.tokens_out,
                "cost_nanos": cost,
                "reported_cost_nanos": reported,
                "priced_cost_nanos": priced,
                "price_version": version,
                "campaign": ev.campaign_name,
                "contact_email": ev.contact_email,
                "purpose": ev.purpose,
                "workflow_id": ev.workflow_id,
                "run_id": ev.run_id,
                "metadata": ev.metadata,
                "source": source,
                "occurred_at": to_iso(at),
            }
        )
        ledger.append(
            {
                "id": event_id,
                "owner_id": owner_id,
                "session_id": None,
                "agent_id": None,
                "provider": provider,
                "model": ev.model,
                "event_type": "llm_tokens",
                "token_kind": None,
                "quantity": ev.tokens_in + ev.tokens_out,
                "unit": "token",
                "unit_cost": None,
                "total_cost_nanos": cost,
                "price_version": "reported" if reported is not None else version,
                "idempotency_key": f"cost:{event_id}",
                "source": source,
                "occurred_at": to_iso(at),
            }
        )
    return items, valid, errors, rows, ledger


async def ingest_outreach(store: Store, owner_id: str, raw: bytes, *, idempotency_key: str | None) -> dict[str, Any]:
    items, valid, errors, rows = await asyncio.to_thread(_prepare_outreach, raw, idempotency_key)
    stored = await store.write(repo.record_outreach, owner_id, rows) if rows else []

    def result(index: int, row: dict, duplicate: bool) -> dict:
        return {
            "id": row["id"],
            "event_type": row["event_type"],
            "contact_email": row["contact_email"],
            "campaign": row["campaign"],
            "index": index,
            "duplicate": duplicate,
        }

    return _answer(items, valid, stored, errors, result)


def _prepare_outreach(
    raw: bytes, idempotency_key: str | None
) -> tuple[list[Any], list[tuple[int, Any, BaseModel]], list[dict], list[dict]]:
    items = parse_items(raw)
    valid, errors = _validate(items, OutreachEventIn)
    rows = []
    for index, item, ev in valid:
        assert isinstance(ev, OutreachEventIn)
        rows.append(
            {
                "id": str(uuid.uuid4()),
                "idempotency_key": f"{idempotency_key}#{index}" if idempotency_key else None,
                "natural_key": f"{ev.provider_message_id}\x1f{ev.event_type}" if ev.provider_message_id else None,
                "item_hash": _hash(item),
                "contact_email": ev.contact_email.strip().lower(),
                "campaign": ev.campaign,
                "step": ev.step,
                "event_type": ev.event_type,
                "provider": ev.provider,
                "provider_message_id": ev.provider_message_id,
                "metadata": ev.metadata,
                "event_ts": to_iso(_at(ev.event_ts)),
            }
        )
    return items, valid, errors, rows


def _usd(nanos: int | None) -> float | None:
    return None if nanos is None else usd(nanos)
