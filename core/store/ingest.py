"""External events (004): costs reported by automation workflows, and outreach (email) events.

A cost event is stored twice in one transaction: its details here (``cost_events``) and its cost as one row of
the usage ledger (``usage_events``, with its rollups), so every cost total stays one exact integer sum.

Idempotency: an item is a replay when its Idempotency-Key (the request's header and the item's index) or its
natural key is already stored for the tenant; a replay writes nothing. The same Idempotency-Key with a different
item is refused (the item's error), never overwritten."""

from __future__ import annotations

import json
from typing import Any, Literal

import sqlite_utils

from core.store import usage
from core.store.timefmt import now_iso

Outcome = Literal["inserted", "duplicate", "conflict"]

_COST_COLUMNS = (
    "id",
    "owner_id",
    "idempotency_key",
    "natural_key",
    "item_hash",
    "provider",
    "model",
    "tokens_in",
    "tokens_out",
    "cost_nanos",
    "reported_cost_nanos",
    "priced_cost_nanos",
    "price_version",
    "campaign",
    "contact_email",
    "purpose",
    "workflow_id",
    "run_id",
    "metadata",
    "source",
    "occurred_at",
    "created_at",
)
_OUTREACH_COLUMNS = (
    "id",
    "owner_id",
    "idempotency_key",
    "natural_key",
    "item_hash",
    "contact_email",
    "campaign",
    "step",
    "event_type",
    "provider",
    "provider_message_id",
    "metadata",
    "event_ts",
    "created_at",
)


def _stored(
    db: sqlite_utils.Database, table: str, owner_id: str, items: list[dict[str, Any]]
) -> dict[tuple[str, str], dict[str, Any]]:
    """The rows already stored under any of the items' keys, by (key column, value): one indexed lookup per
    column and chunk of keys."""
    found: dict[tuple[str, str], dict[str, Any]] = {}
    for column in ("idempotency_key", "natural_key"):
        values = sorted({i[column] for i in items if i.get(column) is not None})
        for n in range(0, len(values), 500):
            chunk = values[n : n + 500]
            for row in db.query(
                f"SELECT * FROM {table} WHERE owner_id = ? AND {column} IN ({', '.join('?' * len(chunk))})",
                [owner_id, *chunk],
            ):
                found[(column, row[column])] = row
    return found


def _store(
    db: sqlite_utils.Database, table: str, columns: tuple[str, ...], owner_id: str, items: list[dict[str, Any]]
) -> list[tuple[Outcome, dict[str, Any]]]:
    """Each item: a row (``columns`` minus owner and created_at). Returns, per item, what happened and the stored
    row (the earlier one for a replay)."""
    out: list[tuple[Outcome, dict[str, Any]]] = []
    created = now_iso()
    fresh: list[dict[str, Any]] = []
    seen = _stored(db, table, owner_id, items)  # and, as the loop goes, the keys taken earlier in this batch
    for item in items:
        earlier = None
        for column in ("idempotency_key", "natural_key"):
            value = item.get(column)
            if value is None:
                continue
            earlier = seen.get((column, value))
            if earlier is not None:
                if column == "idempotency_key" and earlier["item_hash"] != item["item_hash"]:
                    out.append(("conflict", earlier))
                else:
                    out.append(("duplicate", earlier))
                break
        if earlier is not None:
            continue
        row = {**item, "owner_id": owner_id, "created_at": created}
        if isinstance(row.get("metadata"), dict):
            row["metadata"] = json.dumps(row["metadata"], default=str)
        for column in ("idempotency_key", "natural_key"):
            if row.get(column) is not None:
                seen[(column, row[column])] = row
        fresh.append(row)
        out.append(("inserted", row))
    if fresh:
        db.conn.executemany(
            f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({', '.join('?' * len(columns))})",
            [[r.get(c) for c in columns] for r in fresh],
        )
    return out


def record_costs(
    db: sqlite_utils.Database, owner_id: str, items: list[dict[str, Any]], ledger_events: list[dict[str, Any]]
) -> list[tuple[Outcome, dict[str, Any]]]:
    """Cost events and their ledger rows (``ledger_events[i]`` belongs to ``items[i]``, same id), in one
    transaction; only the items stored now reach the ledger."""
    results = _store(db, "cost_events", _COST_COLUMNS, owner_id, items)
    by_id = {e["id"]: e for e in ledger_events}
    fresh = [by_id[row["id"]] for outcome, row in results if outcome == "inserted"]
    usage.record_events(db, fresh)
    return results


def record_outreach(
    db: sqlite_utils.Database, owner_id: str, items: list[dict[str, Any]]
) -> list[tuple[Outcome, dict[str, Any]]]:
    return _store(db, "outreach_events", _OUTREACH_COLUMNS, owner_id, items)


def count_costs(db: sqlite_utils.Database, owner_id: str) -> tuple[int, int]:
    """(cost events stored, their ledger total in nano-USD)."""
    n, total = db.execute(
        "SELECT COUNT(*), COALESCE(SUM(cost_nanos), 0) FROM cost_events WHERE owner_id = ?", [owner_id]
    ).fetchone()
    return int(n), int(total)
