"""004's dashboard metrics over the product's own store: outreach events, the one cost ledger (external costs and
the calls' usage) and the calls with their outcomes.

Periods are whole UTC days, ``start`` and ``end`` both included; the previous period is the one of equal length
just before. Rates are percentages rounded to 2 decimals and changes to 1 (as 004 shows them); money is exact."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, timedelta
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

from core.store import campaigns as campaigns_repo
from core.store import metrics as repo
from core.store.db import Store
from core.store.timefmt import day_start
from pipelines.pricing import usd

from ..errors import BadRequest, NotFound
from .analytics import cost_per_outcome, minutes, per, ratio, successful

OUTREACH_METRICS = ("sends", "replies", "opt_outs", "reply_rate", "opt_out_rate")
VOICE_METRICS = ("calls", "minutes", "cost", "success_rate")
METRICS = OUTREACH_METRICS + VOICE_METRICS
MAX_DAYS = 3660


@dataclass(frozen=True)
class Period:
    start: date
    end: date  # included

    @property
    def days(self) -> int:
        return (self.end - self.start).days + 1

    @property
    def bounds(self) -> tuple[str, str]:
        return day_start(self.start), day_start(self.end + timedelta(days=1))

    def previous(self) -> Period:
        return Period(self.start - timedelta(days=self.days), self.start - timedelta(days=1))

    def each_day(self) -> list[str]:
        return [(self.start + timedelta(days=i)).isoformat() for i in range(self.days)]


def period(start: str | None, end: str | None) -> Period:
    """``start``/``end`` as YYYY-MM-DD (a date-time is cut to its day); 400 when missing or malformed."""
    if start is None or end is None:
        raise BadRequest(f"Missing required parameter: {'start' if start is None else 'end'} (YYYY-MM-DD)")
    try:
        p = Period(date.fromisoformat(start[:10]), date.fromisoformat(end[:10]))
    except ValueError:
        raise BadRequest("start and end must be dates, YYYY-MM-DD") from None
    if p.end < p.start:
        raise BadRequest("end must not be before start")
    if p.days > MAX_DAYS:
        raise BadRequest(f"a period is at most {MAX_DAYS} days")
    return p


def pct(n: int, d: int) -> float:
    return ratio(n * 100, d, 2)


def _round(value: Decimal, places: int) -> float:
    return float(value.quantize(Decimal(1).scaleb(-places), rounding=ROUND_HALF_UP))


def _exact_pct(n: int, d: int) -> Decimal:
    return Decimal(n * 100) / Decimal(d) if d else Decimal(0)


def _counts(rows: list[dict[str, Any]]) -> dict[str, int]:
    out = {"sent": 0, "delivered": 0, "replied": 0, "opt_out": 0, "bounced": 0}
    for r in rows:
        out[r["event_type"]] += r["n"]
    return out


def _outreach_figures(c: dict[str, int]) -> dict[str, Any]:
    sends = c["sent"]
    return {
        "sends": sends,
        "replies": c["replied"],
        "opt_outs": c["opt_out"],
        "bounces": c["bounced"],
        "reply_rate_pct": pct(c["replied"], sends),
        "opt_out_rate_pct": pct(c["opt_out"], sends),
        "bounce_rate_pct": pct(c["bounced"], sends),
    }


def _cost(rows: list[dict[str, Any]]) -> int:
    return sum(r["cost_nanos"] for r in rows)


async def summary(
    store: Store, owner_id: str, p: Period, campaign: str | None, terms: tuple[str, ...]
) -> dict[str, Any]:
    prev = p.previous()

    def read(db: Any) -> tuple[Any, ...]:
        return (
            repo.outreach_counts(db, owner_id, *p.bounds, campaign=campaign),
            repo.outreach_counts(db, owner_id, *prev.bounds, campaign=campaign),
            repo.ledger(db, owner_id, *p.bounds, campaign=campaign)
            if campaign is not None
            else repo.rollup_totals(db, owner_id, *p.bounds),
            repo.calls(db, owner_id, *p.bounds, campaign=campaign),
        )

    now_rows, prev_rows, ledger_rows, calls = await store.read(read)
    now, before = _counts(now_rows), _counts(prev_rows)
    sends, prev_sends = now["sent"], before["sent"]
    reply, prev_reply = _exact_pct(now["replied"], sends), _exact_pct(before["replied"], prev_sends)
    opt, prev_opt = _exact_pct(now["opt_out"], sends), _exact_pct(before["opt_out"], prev_sends)
    cost = _cost(ledger_rows)
    ended = [c for c in calls if c["status"] == "ended"]
    return {
        **_outreach_figures(now),
        "cost_usd": usd(cost),
        "sends_change_pct": None if not prev_sends else _round(Decimal((sends - prev_sends) * 100) / prev_sends, 1),
        "reply_rate_change_pp": _round(reply - prev_reply, 1),
        "opt_out_rate_change_pp": _round(opt - prev_opt, 1),
        "prev_sends": prev_sends,
        "prev_reply_rate_pct": _round(prev_reply, 2),
        "start_date": p.start.isoformat(),
        "end_date": p.end.isoformat(),
        "cost_nanos": cost,
        "cost_per_reply": _per_usd(cost, now["replied"]),
        "unpriced_event_count": sum(r["unpriced"] for r in ledger_rows),
        "prev_start_date": prev.start.isoformat(),
        "prev_end_date": prev.end.isoformat(),
        "calls": len(calls),
        "successful_calls": sum(1 for c in ended if successful(c, terms)),
        "success_rate": ratio(sum(1 for c in ended if successful(c, terms)), len(ended)),
    }


def _per_usd(nanos: int, count: int) -> float | None:
    each = per(nanos, count)
    return None if each is None else usd(each)


async def timeseries(
    store: Store, owner_id: str, metric: str, p: Period, campaign: str | None, terms: tuple[str, ...]
) -> dict[str, Any]:
    days = p.each_day()
    values: dict[str, Any] = {}
    if metric in OUTREACH_METRICS:
        rows = await store.read(
            lambda db: repo.outreach_counts(db, owner_id, *p.bounds, campaign=campaign, by=("day",))
        )
        per_day: dict[str, dict[str, int]] = {}
        for r in rows:
            per_day.setdefault(r["day"], {}).setdefault(r["event_type"], 0)
            per_day[r["day"]][r["event_type"]] += r["n"]
        for d in days:
            counts = per_day.get(d, {})
            sent = counts.get("sent", 0)
            values[d] = {
                "sends": sent,
                "replies": counts.get("replied", 0),
                "opt_outs": counts.get("opt_out", 0),
                "reply_rate": pct(counts.get("replied", 0), sent),
                "opt_out_rate": pct(counts.get("opt_out", 0), sent),
            }[metric]
    elif metric == "cost":
        rows = await store.read(
            lambda db: (
                repo.ledger(db, owner_id, *p.bounds, campaign=campaign, by=("day",))
                if campaign is not None
                else repo.rollup_totals(db, owner_id, *p.bounds, by_day=True)
            )
        )
        by_day = {r["day"]: r["cost_nanos"] for r in rows}
        values = {d: usd(by_day.get(d, 0)) for d in days}
    else:
        calls = await store.read(lambda db: repo.calls(db, owner_id, *p.bounds, campaign=campaign))
        grouped: dict[str, list[dict[str, Any]]] = {}
        for c in calls:
            grouped.setdefault(c["started_at"][:10], []).append(c)
        for d in days:
            group = grouped.get(d, [])
            ended = [c for c in group if c["status"] == "ended"]
            if metric == "calls":
                values[d] = len(group)
            elif metric == "minutes":
                values[d] = minutes(sum(c["duration_ms"] or 0 for c in group))
            elif metric == "success_rate":
                values[d] = ratio(sum(1 for c in ended if successful(c, terms)), len(ended))
    return {
        "metric": metric,
        "points": [{"day": d, "value": values[d]} for d in days],
        "start_date": p.start.isoformat(),
        "end_date": p.end.isoformat(),
    }


async def by_campaign(store: Store, owner_id: str, p: Period, terms: tuple[str, ...]) -> dict[str, Any]:
    def read(db: Any) -> tuple[Any, ...]:
        return (
            repo.outreach_counts(db, owner_id, *p.bounds, by=("campaign",)),
            repo.ledger(db, owner_id, *p.bounds, by=("campaign",)),
            repo.calls(db, owner_id, *p.bounds, with_campaign=True),
        )

    outreach, ledger_rows, calls = await store.read(read)
    counts: dict[str, list[dict[str, Any]]] = {}
    for r in outreach:
        if r["campaign"] is not None:
            counts.setdefault(r["campaign"], []).append(r)
    costs = {r["campaign"]: r["cost_nanos"] for r in ledger_rows if r["campaign"] is not None}
    voice: dict[str, list[dict[str, Any]]] = {}
    for c in calls:
        voice.setdefault(c["campaign"], []).append(c)
    out = []
    for name in sorted(set(counts) | set(costs) | set(voice)):
        c = _counts(counts.get(name, []))
        cost = costs.get(name, 0)
        group = voice.get(name, [])
        out.append(
            {
                "campaign": name,
                **_outreach_figures(c),
                "cost_usd": usd(cost),
                "cost_per_reply": _per_usd(cost, c["replied"]),
                "cost_nanos": cost,
                "voice": {
                    "calls": len(group),
                    "minutes": minutes(sum(x["duration_ms"] or 0 for x in group)),
                    **cost_per_outcome(group, terms),
                },
            }
        )
    return {"campaigns": out, "start_date": p.start.isoformat(), "end_date": p.end.isoformat()}


def _money_row(r: dict[str, Any]) -> dict[str, Any]:
    return {
        "cost_usd": usd(r["cost_nanos"]),
        "tokens_in": r["tokens_in"] or 0,
        "tokens_out": r["tokens_out"] or 0,
        "calls": r["entries"],
        "cost_nanos": r["cost_nanos"],
        "unpriced_event_count": r["unpriced"] or 0,
    }


async def cost_breakdown(
    store: Store, owner_id: str, p: Period, campaign: str | None, workspace_id: str | None
) -> dict[str, Any]:
    if workspace_id is not None and workspace_id != owner_id:
        raise NotFound(f"workspace {workspace_id} not found")

    def read(db: Any) -> tuple[Any, ...]:
        args = (db, owner_id, *p.bounds)
        return (
            repo.ledger(*args, campaign=campaign),
            repo.ledger(*args, campaign=campaign, by=("provider",)),
            repo.ledger(*args, campaign=campaign, by=("provider", "model")),
            repo.ledger(*args, campaign=campaign, by=("day",)),
        )

    total, providers, models, daily = await store.read(read)
    empty = {"cost_nanos": 0, "tokens_in": 0, "tokens_out": 0, "entries": 0, "unpriced": 0}

    def order(r):
        return (-r["cost_nanos"], r["provider"], r.get("model") or "")

    return {
        "total": _money_row(total[0] if total else empty),
        "by_provider": [{"provider": r["provider"], **_money_row(r)} for r in sorted(providers, key=order)],
        "by_model": [
            {"model": r["model"], "provider": r["provider"], **_money_row(r)} for r in sorted(models, key=order)
        ],
        "daily": [{"day": r["day"], "value": usd(r["cost_nanos"])} for r in sorted(daily, key=lambda r: r["day"])],
        "start_date": p.start.isoformat(),
        "end_date": p.end.isoformat(),
    }


async def step_breakdown(store: Store, owner_id: str, p: Period, campaign: str | None, source: str) -> dict[str, Any]:
    def read(db: Any) -> tuple[Any, ...]:
        return (
            repo.outreach_counts(db, owner_id, *p.bounds, campaign=campaign, by=("step",)),
            repo.outreach_counts(db, owner_id, *p.bounds, campaign=campaign, by=("day",)),
        )

    steps, days = await store.read(read)
    sent_steps = sorted((r for r in steps if r["event_type"] == "sent"), key=lambda r: (r["step"] is None, r["step"]))
    daily = sorted((r for r in days if r["event_type"] == "sent"), key=lambda r: r["day"])
    return {
        "steps": [
            {
                "step": r["step"],
                "name": f"Email {r['step']}" if r["step"] is not None else "No step",
                "sends": r["n"],
                "lastSentAt": _js_time(r["last_at"]),
            }
            for r in sent_steps
        ],
        "dailySends": [{"date": r["day"], "count": r["n"]} for r in daily],
        "totalSends": sum(r["n"] for r in sent_steps),
        "dateRange": {"start": p.start.isoformat(), "end": p.end.isoformat()},
        "source": source,
    }


def _js_time(stored: str) -> str:
    """Store time (microseconds) as 004's JavaScript ISO string (milliseconds)."""
    return stored[:23] + "Z"


async def campaigns(store: Store, owner_id: str) -> dict[str, Any]:
    """004's list of the campaign names the tenant's data carries, with the dialer's campaigns (their id, status,
    agent, progress and total cost added) among them."""

    def read(db: Any) -> tuple[list[str], list[dict[str, Any]]]:
        return repo.campaign_names(db, owner_id), campaigns_repo.list_(db, owner_id)

    names, stored = await store.read(read)
    by_name = {c["name"]: c for c in stored}
    listed = [
        {
            **{k: c[k] for k in ("name", "id", "status", "agent_id", "progress", "status_reason", "total_cost_nanos")},
            "total_cost": usd(c["total_cost_nanos"]),
        }
        for c in stored
    ]
    listed += [{"name": n} for n in names if n not in by_name]
    return {"campaigns": listed}


async def sheet_stats(store: Store, owner_id: str, campaign: str | None) -> dict[str, Any]:
    def read(db: Any) -> tuple[Any, ...]:
        return (
            repo.outreach_counts(db, owner_id, None, None, campaign=campaign, by=("step",)),
            repo.outreach_counts(db, owner_id, None, None, campaign=campaign),
            repo.contacts(db, owner_id, campaign=campaign),
        )

    steps, totals, contacts = await store.read(read)
    sends = {r["step"]: r["n"] for r in steps if r["event_type"] == "sent"}
    by_type = {r["event_type"]: r for r in totals}
    reached = by_type["sent"]["contacts"] if "sent" in by_type else 0
    replies = by_type["replied"]["contacts"] if "replied" in by_type else 0
    opt_outs = by_type["opt_out"]["contacts"] if "opt_out" in by_type else 0
    return {
        "success": True,
        "stats": {
            "totalContacts": contacts,
            "email1Sends": sends.get(1, 0),
            "email2Sends": sends.get(2, 0),
            "email3Sends": sends.get(3, 0),
            "totalSends": sum(sends.values()),
            "uniqueContactsSent": reached,
            "replies": replies,
            "optOuts": opt_outs,
            "replyRate": pct(replies, reached),
            "optOutRate": pct(opt_outs, reached),
            "campaignName": campaign,
        },
    }


async def sheet_rows(store: Store, owner_id: str, campaign: str | None, limit: int, offset: int) -> dict[str, Any]:
    rows, total = await store.read(
        lambda db: repo.outreach_rows(db, owner_id, campaign=campaign, limit=limit, offset=offset)
    )
    return {
        "success": True,
        "rows": [{**r, "event_ts": _js_time(r["event_ts"])} for r in rows],
        "total": total,
        "limit": limit,
        "offset": offset,
    }
