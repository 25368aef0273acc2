"""Re-pricing: a period's usage costed under another price book, compared with what was recorded.

Read-only: the raw usage and the prices each event was recorded with stay as they are."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any

import sqlite_utils

from core.store.timefmt import parse_iso
from pipelines.pricing import PriceBook, Unpriced, cost_nanos


@dataclass
class Line:
    events: int = 0
    original_nanos: int = 0
    repriced_nanos: int = 0
    unpriced_before: int = 0
    unpriced_after: int = 0

    @property
    def difference_nanos(self) -> int:
        return self.repriced_nanos - self.original_nanos


@dataclass
class Report:
    from_version: set[str] = field(default_factory=set)
    to_version: str = ""
    lines: dict[tuple[str, str], Line] = field(default_factory=dict)

    @property
    def total(self) -> Line:
        t = Line()
        for line in self.lines.values():
            t.events += line.events
            t.original_nanos += line.original_nanos
            t.repriced_nanos += line.repriced_nanos
            t.unpriced_before += line.unpriced_before
            t.unpriced_after += line.unpriced_after
        return t

    def as_dict(self) -> dict[str, Any]:
        def line(v: Line) -> dict[str, Any]:
            return {
                "events": v.events,
                "original_usd": str(Decimal(v.original_nanos) / 10**9),
                "repriced_usd": str(Decimal(v.repriced_nanos) / 10**9),
                "difference_usd": str(Decimal(v.difference_nanos) / 10**9),
                "unpriced_before": v.unpriced_before,
                "unpriced_after": v.unpriced_after,
            }

        return {
            "from_versions": sorted(self.from_version),
            "to_version": self.to_version,
            "by_provider": {f"{p}/{t}": line(v) for (p, t), v in sorted(self.lines.items())},
            "total": line(self.total),
        }


def _rows(db: sqlite_utils.Database, start: str | None, end: str | None, owner: str | None) -> Iterator[dict]:
    where, args = ["1=1"], []
    for clause, value in (("occurred_at >= ?", start), ("occurred_at < ?", end), ("owner_id = ?", owner)):
        if value:
            where.append(clause)
            args.append(value)
    yield from db.query(
        f"SELECT provider, model, event_type, token_kind, quantity, total_cost_nanos, price_version, "
        f"occurred_at FROM usage_events WHERE {' AND '.join(where)}",
        args,
    )


def reprice(
    db: sqlite_utils.Database,
    book: PriceBook,
    *,
    start: str | None = None,
    end: str | None = None,
    owner_id: str | None = None,
    progress_every: int = 100_000,
) -> Report:
    report = Report(to_version=book.version)
    for n, row in enumerate(_rows(db, start, end, owner_id), 1):
        line = report.lines.setdefault((row["provider"], row["event_type"]), Line())
        line.events += 1
        if row["total_cost_nanos"] is None:
            line.unpriced_before += 1
        else:
            line.original_nanos += row["total_cost_nanos"]
        report.from_version.add(row["price_version"] or "unpriced")
        at: datetime = parse_iso(row["occurred_at"])
        try:
            quote = book.quote(
                provider=row["provider"],
                event_type=row["event_type"],
                model=row["model"],
                token_kind=row["token_kind"],
                at=at,
            )
            line.repriced_nanos += cost_nanos(Decimal(row["quantity"]), quote.unit_cost)
        except Unpriced:
            line.unpriced_after += 1
        if progress_every and n % progress_every == 0:
            print(f"reprice: {n} events...", file=sys.stderr, flush=True)
    return report
