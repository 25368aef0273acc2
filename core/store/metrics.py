"""Reads behind the metrics (004) and analytics (003) routes: outreach counts, the ledger grouped every way the
dashboards ask, and the calls of a period with their analysis outcome and exact cost. Everything is scoped to one
tenant (``owner_id``); periods are ``[start, end)`` store timestamps."""

from __future__ import annotations

from typing import Any

import sqlite_utils

from core.store.dialect import count_if, json_text

# Ledger sources of external costs (usage_events.source): what separates them from the calls' own usage.
COST_SOURCES = ("cost-events", "llm-usage")

# Ledger grouping keys -> SQL over usage_events u, its cost event c (external costs) and its session s (voice).
_LEDGER_KEYS = {
    "day": "substr(u.occurred_at, 1, 10)",
    "provider": "u.provider",
    "model": "u.model",
    "campaign": "COALESCE(c.campaign, s.campaign)",
}
_TOKENS = (
    "SUM(CASE WHEN c.id IS NOT NULL THEN c.{c} WHEN u.event_type = 'llm_tokens' AND u.token_kind = '{kind}' "
    "THEN CAST(u.quantity AS BIGINT) ELSE 0 END)"
)


def rollup_totals(
    db: sqlite_utils.Database, owner_id: str, start: str, end: str, *, by_day: bool = False
) -> list[dict[str, Any]]:
    """The ledger's cost and unpriced count in whole days ``[start, end)`` from the rollups kept with every write
    (the same exact sums as the events, without reading them): for periods over the whole ledger."""
    day = "day, " if by_day else ""
    rows = list(
        db.query(
            f"SELECT {day}COALESCE(SUM(total_cost_nanos), 0) AS cost_nanos, "
            f"COALESCE(SUM(unpriced_count), 0) AS unpriced, "
            f"COALESCE(SUM(event_count), 0) AS entries FROM cost_rollups WHERE owner_id = ? AND day >= ? AND day < ?"
            + (" GROUP BY day" if by_day else ""),
            [owner_id, start[:10], end[:10]],
        )
    )
    return [r for r in rows if r["entries"]]


def ledger(
    db: sqlite_utils.Database,
    owner_id: str,
    start: str,
    end: str,
    *,
    campaign: str | None = None,
    by: tuple[str, ...] = (),
) -> list[dict[str, Any]]:
    """Ledger totals of the events that occurred in the period, grouped by ``by`` (day, provider, model,
    campaign): ``cost_nanos`` (priced events; unpriced ones add 0 and count in ``unpriced``), ``tokens_in``,
    ``tokens_out``, ``entries``. A campaign covers its cost events and the usage of its calls."""
    if campaign is not None:
        return _campaign_ledger(db, owner_id, start, end, campaign, by)
    groups = [_LEDGER_KEYS[k] for k in by]
    where = ["u.owner_id = ?", "u.occurred_at >= ?", "u.occurred_at < ?"]
    args: list[Any] = [owner_id, start, end]
    select = [f"{g} AS {k}" for g, k in zip(groups, by, strict=True)]
    select += [
        "COALESCE(SUM(u.total_cost_nanos), 0) AS cost_nanos",
        "COUNT(*) AS entries",
        count_if("u.priced = 0") + " AS unpriced",
        _TOKENS.format(c="tokens_in", kind="input") + " AS tokens_in",
        _TOKENS.format(c="tokens_out", kind="output") + " AS tokens_out",
    ]
    sql = (
        f"SELECT {', '.join(select)} FROM usage_events u "
        f"LEFT JOIN cost_events c ON c.id = u.id AND u.source IN ({', '.join('?' * len(COST_SOURCES))}) "
        f"LEFT JOIN sessions s ON s.id = u.session_id WHERE {' AND '.join(where)}"
    )
    if groups:
        sql += f" GROUP BY {', '.join(groups)}"
    rows = list(db.query(sql, [*COST_SOURCES, *args]))
    return [r for r in rows if r["entries"]]


def _campaign_ledger(
    db: sqlite_utils.Database, owner_id: str, start: str, end: str, campaign: str, by: tuple[str, ...]
) -> list[dict[str, Any]]:
    """One campaign's ledger: its cost events (their ledger figure is kept on them) and the usage of its calls, each
    read through its own index and merged here."""
    external = {"day": "substr(occurred_at, 1, 10)", "provider": "provider", "model": "model", "campaign": "campaign"}
    voice = {
        "day": "substr(u.occurred_at, 1, 10)",
        "provider": "u.provider",
        "model": "u.model",
        "campaign": "s.campaign",
    }
    tokens = (
        "CASE WHEN u.event_type = 'llm_tokens' AND u.token_kind = '{kind}' THEN CAST(u.quantity AS BIGINT) ELSE 0 END"
    )
    parts = [
        (
            external,
            f"SUM(COALESCE(cost_nanos, 0)), COUNT(*), {count_if('cost_nanos IS NULL')}, SUM(tokens_in), "
            "SUM(tokens_out) "
            "FROM cost_events WHERE owner_id = ? AND campaign = ? AND occurred_at >= ? AND occurred_at < ?",
        ),
        (
            voice,
            f"SUM(COALESCE(u.total_cost_nanos, 0)), COUNT(*), {count_if('u.priced = 0')}, "
            f"SUM({tokens.format(kind='input')}), SUM({tokens.format(kind='output')}) "
            "FROM sessions s JOIN usage_events u ON u.session_id = s.id "
            "WHERE s.owner_id = ? AND s.campaign = ? AND u.occurred_at >= ? AND u.occurred_at < ?",
        ),
    ]
    merged: dict[tuple[Any, ...], dict[str, Any]] = {}
    for keys, tail in parts:
        groups = [keys[k] for k in by]
        sql = f"SELECT {''.join(g + ', ' for g in groups)}{tail}" + (f" GROUP BY {', '.join(groups)}" if groups else "")
        for row in db.execute(sql, [owner_id, campaign, start, end]).fetchall():
            group, (cost, entries, unpriced, t_in, t_out) = tuple(row[: len(by)]), row[len(by) :]
            if not entries:
                continue
            acc = merged.setdefault(
                group,
                {
                    **dict(zip(by, group, strict=True)),
                    "cost_nanos": 0,
                    "entries": 0,
                    "unpriced": 0,
                    "tokens_in": 0,
                    "tokens_out": 0,
                },
            )
            acc["cost_nanos"] += cost or 0
            acc["entries"] += entries
            acc["unpriced"] += unpriced or 0
            acc["tokens_in"] += t_in or 0
            acc["tokens_out"] += t_out or 0
    return list(merged.values())


def outreach_counts(
    db: sqlite_utils.Database,
    owner_id: str,
    start: str | None,
    end: str | None,
    *,
    campaign: str | None = None,
    by: tuple[str, ...] = (),
) -> list[dict[str, Any]]:
    """Outreach events per event type (and per ``by``: day, campaign, step) in the period (None: open-ended)."""
    keys = {"day": "substr(event_ts, 1, 10)", "campaign": "campaign", "step": "step"}
    groups = [keys[k] for k in by] + ["event_type"]
    where, args = ["owner_id = ?"], [owner_id]
    if start is not None:
        where.append("event_ts >= ?")
        args.append(start)
    if end is not None:
        where.append("event_ts < ?")
        args.append(end)
    if campaign is not None:
        where.append("campaign = ?")
        args.append(campaign)
    select = [f"{g} AS {k}" for g, k in zip(groups, [*by, "event_type"], strict=True)]
    return list(
        db.query(
            f"SELECT {', '.join(select)}, COUNT(*) AS n, MAX(event_ts) AS last_at, "
            f"COUNT(DISTINCT contact_email) AS contacts FROM outreach_events WHERE {' AND '.join(where)} "
            f"GROUP BY {', '.join(groups)}",
            args,
        )
    )


def contacts(db: sqlite_utils.Database, owner_id: str, *, campaign: str | None = None) -> int:
    where, args = "owner_id = ?", [owner_id]
    if campaign is not None:
        where, args = where + " AND campaign = ?", [*args, campaign]
    return int(
        db.execute(f"SELECT COUNT(DISTINCT contact_email) FROM outreach_events WHERE {where}", args).fetchone()[0]
    )


def outreach_rows(
    db: sqlite_utils.Database, owner_id: str, *, campaign: str | None, limit: int, offset: int
) -> tuple[list[dict[str, Any]], int]:
    where, args = "owner_id = ?", [owner_id]
    if campaign is not None:
        where, args = where + " AND campaign = ?", [*args, campaign]
    total = int(db.execute(f"SELECT COUNT(*) FROM outreach_events WHERE {where}", args).fetchone()[0])
    rows = list(
        db.query(
            f"SELECT id, contact_email, campaign, step, event_type, provider, provider_message_id, "
            f"event_ts, created_at "
            f"FROM outreach_events WHERE {where} ORDER BY event_ts, seq LIMIT ? OFFSET ?",
            [*args, limit, offset],
        )
    )
    return rows, total


def campaign_names(db: sqlite_utils.Database, owner_id: str) -> list[str]:
    """Every campaign the tenant's data names: outreach, external costs, calls, agents' defaults."""
    default = json_text(db, "config", "campaign")
    rows = db.execute(
        "SELECT campaign FROM outreach_events WHERE owner_id = ? AND campaign IS NOT NULL "
        "UNION SELECT campaign FROM cost_events WHERE owner_id = ? AND campaign IS NOT NULL "
        "UNION SELECT campaign FROM sessions WHERE owner_id = ? AND campaign IS NOT NULL "
        f"UNION SELECT {default} FROM agents WHERE owner_id = ? AND deleted_at IS NULL AND {default} IS NOT NULL",
        [owner_id] * 4,
    ).fetchall()
    return sorted(r[0] for r in rows)


def calls(
    db: sqlite_utils.Database,
    owner_id: str,
    start: str | None,
    end: str | None,
    *,
    agent_id: str | None = None,
    campaign: str | None = None,
    with_campaign: bool = False,
) -> list[dict[str, Any]]:
    """The calls (and text sessions) started in the period, pending reservations left out, each with its
    duration, analysis outcome and the exact total of all its usage."""
    where, args = ["s.owner_id = ?", "s.status != 'pending'"], [owner_id]
    for clause, value in (
        ("s.started_at >= ?", start),
        ("s.started_at < ?", end),
        ("s.agent_id = ?", agent_id),
        ("s.campaign = ?", campaign),
    ):
        if value is not None:
            where.append(clause)
            args.append(value)
    if with_campaign:
        where.append("s.campaign IS NOT NULL")
    return list(
        db.query(
            "SELECT s.id, s.agent_id, s.started_at, s.status, s.duration_ms, s.campaign, a.status AS analysis_status, "
            "a.outcome, COALESCE(sc.total_cost_nanos, 0) AS cost_nanos, COALESCE(sc.unpriced_count, 0) AS unpriced "
            "FROM sessions s LEFT JOIN analyses a ON a.session_id = s.id "
            "LEFT JOIN session_costs sc ON sc.session_id = s.id "
            f"WHERE {' AND '.join(where)} ORDER BY s.started_at",
            args,
        )
    )


def agent_names(db: sqlite_utils.Database, owner_id: str) -> dict[str, str]:
    """Every agent of the tenant by id (deleted ones too: their calls still count)."""
    return dict(db.execute("SELECT id, name FROM agents WHERE owner_id = ?", [owner_id]).fetchall())


def live_agent_count(db: sqlite_utils.Database, owner_id: str) -> int:
    return int(
        db.execute("SELECT COUNT(*) FROM agents WHERE owner_id = ? AND deleted_at IS NULL", [owner_id]).fetchone()[0]
    )
