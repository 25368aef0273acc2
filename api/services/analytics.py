"""Call analytics (003) and cost per outcome: what the calls of a period achieved, by the post-call analysis's
outcome, and what they cost, from the ledger's exact per-call totals."""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from decimal import ROUND_HALF_EVEN, ROUND_HALF_UP, Decimal
from typing import Any

from core.store import metrics as repo
from core.store.db import Store
from core.store.timefmt import to_iso
from pipelines.pricing import usd

from ..errors import NotFound

# Words that turn an outcome around ("not resolved", "appointment declined"): such an outcome is never a success.
NEGATIONS = frozenset(
    {
        "not",
        "no",
        "never",
        "without",
        "failed",
        "fail",
        "unable",
        "declined",
        "refused",
        "cancelled",
        "canceled",
        "rejected",
        "lost",
        "unsuccessful",
        "didn't",
        "didnt",
        "wasn't",
        "couldn't",
        "won't",
        "hung",
        "voicemail",
    }
)
PERIOD_DAYS = {"day": 1, "week": 7, "month": 30, "year": 365}
TOP_AGENTS = 5


def _words(text: str) -> list[str]:
    return re.findall(r"[a-z0-9']+", text.lower())


def is_success(outcome: str | None, terms: Iterable[str]) -> bool:
    """An outcome counts as a success when it contains one of ``terms`` (whole words, any case) and none of
    NEGATIONS."""
    if not outcome:
        return False
    words = _words(outcome)
    if NEGATIONS.intersection(words):
        return False
    padded = f" {' '.join(words)} "
    return any(f" {' '.join(_words(t))} " in padded for t in terms if _words(t))


def successful(row: dict[str, Any], terms: Iterable[str]) -> bool:
    return row["analysis_status"] == "completed" and is_success(row["outcome"], terms)


def ratio(n: int, d: int, places: int = 2) -> float:
    """n/d rounded half up to ``places`` decimals from the exact fraction (0.0 when d is 0)."""
    if not d:
        return 0.0
    q = Decimal(1).scaleb(-places)
    return float((Decimal(n) / Decimal(d)).quantize(q, rounding=ROUND_HALF_UP))


def minutes(ms: int) -> float:
    return float((Decimal(ms) / 60_000).quantize(Decimal("0.01"), rounding=ROUND_HALF_UP))


def per(nanos: int, count: int) -> int | None:
    """An exact cost shared by ``count`` outcomes, in whole nano-USD (half-even); None when there is none."""
    if not count:
        return None
    return int((Decimal(nanos) / count).to_integral_value(rounding=ROUND_HALF_EVEN))


def cost_per_outcome(rows: list[dict[str, Any]], terms: Iterable[str]) -> dict[str, Any]:
    """Voice figures of a set of calls: every call's usage counts (failed and unanswered attempts too)."""
    terms = tuple(terms)
    total = sum(r["cost_nanos"] for r in rows)
    wins = sum(1 for r in rows if successful(r, terms))
    each = per(total, wins)
    return {
        "cost_usd": usd(total),
        "cost_nanos": total,
        "successful_calls": wins,
        "cost_per_successful_call": None if each is None else usd(each),
        "cost_per_successful_call_nanos": each,
        "unpriced_event_count": sum(r["unpriced"] for r in rows),
    }


def _since(period: str | None) -> str | None:
    if period is None:
        return None
    return to_iso(datetime.now(UTC) - timedelta(days=PERIOD_DAYS[period]))


def _ended(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [r for r in rows if r["status"] == "ended"]


def _call_figures(rows: list[dict[str, Any]], terms: tuple[str, ...]) -> dict[str, Any]:
    ended = _ended(rows)
    total_ms = sum(r["duration_ms"] or 0 for r in rows)
    timed = [r["duration_ms"] for r in ended if r["duration_ms"] is not None]
    average = (sum(timed) / len(timed) / 1000) if timed else 0
    return {
        "total_calls": len(rows),
        "total_minutes": minutes(total_ms),
        "average_call_duration": int(Decimal(average).quantize(Decimal(1), rounding=ROUND_HALF_UP)),
        "success_rate": ratio(sum(1 for r in ended if successful(r, terms)), len(ended)),
    }


def _check_tenant(tenant_id: str | None, acting: str) -> None:
    if tenant_id is not None and tenant_id != acting:
        raise NotFound(f"tenant {tenant_id} not found")


async def summary(
    store: Store, owner_id: str, terms: tuple[str, ...], *, period: str | None, tenant_id: str | None
) -> dict[str, Any]:
    _check_tenant(tenant_id, owner_id)
    since = _since(period)

    def read(db: Any) -> tuple[list[dict[str, Any]], dict[str, str], int]:
        return (
            repo.calls(db, owner_id, since, None),
            repo.agent_names(db, owner_id),
            repo.live_agent_count(db, owner_id),
        )

    rows, names, agent_count = await store.read(read)
    hours = Counter(int(r["started_at"][11:13]) for r in rows)
    per_agent: dict[str, list[int]] = {}
    for r in rows:
        acc = per_agent.setdefault(r["agent_id"], [0, 0])
        acc[0] += 1
        acc[1] += r["duration_ms"] or 0
    top = sorted(per_agent.items(), key=lambda kv: (-kv[1][0], -kv[1][1], kv[0]))[:TOP_AGENTS]
    figures = _call_figures(rows, terms)
    return {
        "total_agents": agent_count,
        "total_calls": figures["total_calls"],
        "total_minutes": figures["total_minutes"],
        "average_call_duration": figures["average_call_duration"],
        "success_rate": figures["success_rate"],
        "busiest_hour": min(hours, key=lambda h: (-hours[h], h)) if hours else None,
        "top_agents": [{"agent_id": a, "name": names.get(a), "calls": n, "minutes": minutes(ms)} for a, (n, ms) in top],
        "period": period,
        **cost_per_outcome(rows, terms),
    }


async def agent(
    store: Store, owner_id: str, agent_id: str, terms: tuple[str, ...], *, period: str | None
) -> dict[str, Any]:
    since = _since(period)

    def read(db: Any) -> tuple[list[dict[str, Any]], dict[str, str]]:
        return repo.calls(db, owner_id, since, None, agent_id=agent_id), repo.agent_names(db, owner_id)

    rows, names = await store.read(read)
    hours = Counter(int(r["started_at"][11:13]) for r in rows)
    days: dict[str, list[int]] = {}
    for r in rows:
        acc = days.setdefault(r["started_at"][:10], [0, 0])
        acc[0] += 1
        acc[1] += r["duration_ms"] or 0
    return {
        "agent_id": agent_id,
        "name": names.get(agent_id),
        **_call_figures(rows, terms),
        "hourly_distribution": {str(h): hours[h] for h in sorted(hours)},
        "daily_trend": [{"date": d, "calls": n, "minutes": minutes(ms)} for d, (n, ms) in sorted(days.items())],
        "period": period,
        **cost_per_outcome(rows, terms),
    }
