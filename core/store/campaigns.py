"""Campaigns: batch outbound calling (the dialer is api/services/dialer.py). A campaign's contacts each move
``pending`` -> ``in_progress`` -> an outcome (``completed``, ``busy``, ``no_answer``, ``voicemail``, ``failed``), or
``retrying`` (due again at ``next_attempt_at``) when the campaign's retry policy says so; ``cancelled`` when the
campaign is, ``do_not_call`` when its number is on the tenant's list. Every dial is an attempt row naming its
phone call (``outbound_calls``), written in the same transaction that claims the contact, so a contact is never
dialled twice for one attempt, whichever node or restart picks the campaign up.

The campaign's own states: draft -> running <-> paused -> completed | cancelled (`ACTIONS`)."""

from __future__ import annotations

import json
import uuid
from typing import Any, Literal, get_args

import sqlite_utils

from core import phone_calls
from core.store import events as events_repo
from core.store.dialect import marks as in_marks
from core.store.errors import INTEGRITY_ERRORS, ConflictError, NotFoundError
from core.store.timefmt import now_iso

# A contact's state; the campaign's progress counts its contacts by it.
ContactStatus = Literal[
    "pending",
    "in_progress",
    "retrying",
    "completed",
    "busy",
    "no_answer",
    "voicemail",
    "failed",
    "cancelled",
    "do_not_call",
]
PROGRESS: tuple[str, ...] = get_args(ContactStatus)
OUTCOMES = ("completed", "busy", "no_answer", "voicemail", "failed")
OPEN = ("pending", "in_progress", "retrying")
# action -> (the states it may start from, the state it leads to)
ACTIONS = {
    "start": (("draft",), "running"),
    "pause": (("running",), "paused"),
    "resume": (("paused",), "running"),
    "cancel": (("draft", "running", "paused"), "cancelled"),
}
DEFAULT_RETRY: dict[str, Any] = {"max_attempts": 1, "on": ["busy", "no_answer"], "backoff_seconds": 300}


def _record(row: dict[str, Any]) -> dict[str, Any]:
    out = dict(row)
    for key in ("schedule", "retry", "circuit_breaker"):
        out[key] = json.loads(row[key]) if row.get(key) else None
    return out


def create(db: sqlite_utils.Database, owner_id: str, data: dict[str, Any]) -> dict[str, Any]:
    """``data``: name, agent_id, contacts [{phone_number, variables}], schedule, max_concurrent_calls, retry,
    circuit_breaker, callback_url."""
    now = now_iso()
    campaign_id = f"cmp_{uuid.uuid4().hex[:16]}"
    try:
        db.execute(
            "INSERT INTO campaigns (id, owner_id, name, agent_id, status, schedule, max_concurrent_calls, retry, "
            "circuit_breaker, callback_url, created_at, updated_at) VALUES (?,?,?,?,'draft',?,?,?,?,?,?,?)",
            [
                campaign_id,
                owner_id,
                data["name"],
                data["agent_id"],
                json.dumps(data["schedule"]) if data.get("schedule") else None,
                data.get("max_concurrent_calls") or 1,
                json.dumps(data.get("retry") or DEFAULT_RETRY),
                json.dumps(data["circuit_breaker"]) if data.get("circuit_breaker") else None,
                data.get("callback_url"),
                now,
                now,
            ],
        )
    except INTEGRITY_ERRORS:
        raise ConflictError(f"a campaign named {data['name']!r} exists already") from None
    add_contacts(db, owner_id, campaign_id, data.get("contacts") or [])
    return get(db, owner_id, campaign_id)


def add_contacts(
    db: sqlite_utils.Database, owner_id: str, campaign_id: str, contacts: list[dict[str, Any]]
) -> dict[str, int]:
    """The contacts, each once per campaign: a number already in it is counted as a duplicate, not added."""
    row = get_row(db, owner_id, campaign_id)
    if row["status"] in ("completed", "cancelled"):
        raise ConflictError(f"campaign {campaign_id} is {row['status']}: it takes no more contacts")
    now = now_iso()
    added = 0
    for c in contacts:
        cur = db.execute(
            "INSERT INTO campaign_contacts (campaign_id, owner_id, phone_number, variables, status, created_at, "
            "updated_at) VALUES (?,?,?,?,'pending',?,?) ON CONFLICT DO NOTHING",
            [
                campaign_id,
                owner_id,
                c["phone_number"],
                json.dumps(c["variables"]) if c.get("variables") else None,
                now,
                now,
            ],
        )
        added += cur.rowcount
    return {"added": added, "duplicates": len(contacts) - added}


def get_row(db: sqlite_utils.Database, owner_id: str, campaign_id: str) -> dict[str, Any]:
    rows = list(db.query("SELECT * FROM campaigns WHERE id = ? AND owner_id = ?", [campaign_id, owner_id]))
    if not rows:
        raise NotFoundError(f"campaign {campaign_id} not found")
    return _record(rows[0])


def progress(db: sqlite_utils.Database, campaign_id: str) -> dict[str, int]:
    counts = dict.fromkeys(PROGRESS, 0)
    for status, n in db.execute(
        "SELECT status, COUNT(*) FROM campaign_contacts WHERE campaign_id = ? GROUP BY status", [campaign_id]
    ):
        counts[status] = n
    return counts


def costs(db: sqlite_utils.Database, campaign_id: str, success_outcomes: tuple[str, ...]) -> dict[str, Any]:
    """The ledger's cost of the campaign's calls: in all, per attempt outcome, and per successful call (a call
    whose analysis outcome is one of `success_outcomes`)."""
    by_outcome: dict[str, int] = {}
    for status, nanos in db.execute(
        "SELECT a.status, COALESCE(SUM(u.total_cost_nanos), 0) FROM campaign_attempts a "
        "JOIN usage_events u ON u.session_id = a.session_id WHERE a.campaign_id = ? GROUP BY a.status",
        [campaign_id],
    ):
        by_outcome[status] = int(nanos)
    successes = 0
    if success_outcomes:
        successes = int(
            db.execute(
                "SELECT COUNT(*) FROM campaign_attempts a JOIN analyses y ON y.session_id = a.session_id "
                f"WHERE a.campaign_id = ? AND LOWER(y.outcome) IN ({in_marks(list(success_outcomes))})",
                [campaign_id, *success_outcomes],
            ).fetchone()[0]
        )
    total = sum(by_outcome.values())
    return {
        "total_cost_nanos": total,
        "by_outcome_nanos": by_outcome,
        "successful_calls": successes,
        "cost_per_success_nanos": total // successes if successes else None,
    }


def get(
    db: sqlite_utils.Database, owner_id: str, campaign_id: str, success_outcomes: tuple[str, ...] = ()
) -> dict[str, Any]:
    row = get_row(db, owner_id, campaign_id)
    return {**row, "progress": progress(db, campaign_id), "costs": costs(db, campaign_id, success_outcomes)}


def list_(db: sqlite_utils.Database, owner_id: str) -> list[dict[str, Any]]:
    """The tenant's campaigns, newest first, each with its progress and the ledger's total cost of its calls."""
    rows = db.query("SELECT * FROM campaigns WHERE owner_id = ? ORDER BY created_at DESC, id", [owner_id])
    totals = {
        campaign_id: int(nanos)
        for campaign_id, nanos in db.execute(
            "SELECT a.campaign_id, COALESCE(SUM(u.total_cost_nanos), 0) FROM campaign_attempts a "
            "JOIN campaigns c ON c.id = a.campaign_id JOIN usage_events u ON u.session_id = a.session_id "
            "WHERE c.owner_id = ? GROUP BY a.campaign_id",
            [owner_id],
        )
    }
    return [{**_record(r), "progress": progress(db, r["id"]), "total_cost_nanos": totals.get(r["id"], 0)} for r in rows]


def act(db: sqlite_utils.Database, owner_id: str, campaign_id: str, action: str, *, reason: str | None = None) -> str:
    """The campaign's next state; ConflictError for a transition its state does not allow. Cancelling cancels its
    contacts not yet dialled (a call in flight goes on to its end)."""
    row = get_row(db, owner_id, campaign_id)
    allowed, to = ACTIONS[action]
    if row["status"] not in allowed:
        raise ConflictError(f"campaign {campaign_id} is {row['status']}: it cannot {action}")
    set_status(db, campaign_id, to, reason=reason)
    if to == "cancelled":
        db.execute(
            "UPDATE campaign_contacts SET status = 'cancelled', updated_at = ? "
            "WHERE campaign_id = ? AND status IN ('pending', 'retrying')",
            [now_iso(), campaign_id],
        )
    emit_progress(db, {**row, "status": to})
    return to


def delete(db: sqlite_utils.Database, owner_id: str, campaign_id: str) -> None:
    """A draft, completed or cancelled campaign goes with its contacts and attempts (the calls it made keep their
    sessions, their ledger rows and the campaign's name); a running or paused one is a ConflictError (cancel it)."""
    row = get_row(db, owner_id, campaign_id)
    if row["status"] in ("running", "paused"):
        raise ConflictError(f"campaign {campaign_id} is {row['status']}: cancel it before deleting it")
    db.execute("DELETE FROM campaign_attempts WHERE campaign_id = ?", [campaign_id])
    db.execute("DELETE FROM campaign_contacts WHERE campaign_id = ?", [campaign_id])
    db.execute("DELETE FROM campaigns WHERE id = ?", [campaign_id])


def emit_progress(db: sqlite_utils.Database, campaign: dict[str, Any], kind: str = "campaign.progress") -> None:
    """The campaign's live event on the tenant's stream (``call_sid``: the campaign's id), in the write that changed
    it: its status and progress."""
    payload = {
        "campaign_id": campaign["id"],
        "name": campaign["name"],
        "status": campaign["status"],
        "progress": progress(db, campaign["id"]),
    }
    events_repo.emit(db, owner_id=campaign["owner_id"], call_sid=campaign["id"], event_type=kind, payload=payload)


def set_status(db: sqlite_utils.Database, campaign_id: str, status: str, *, reason: str | None = None) -> None:
    now = now_iso()
    db.execute(
        "UPDATE campaigns SET status = ?, status_reason = ?, updated_at = ?, "
        "started_at = CASE WHEN ? = 'running' THEN COALESCE(started_at, ?) ELSE started_at END, "
        "ended_at = CASE WHEN ? IN ('completed', 'cancelled') THEN ? ELSE ended_at END WHERE id = ?",
        [status, reason, now, status, now, status, now, campaign_id],
    )


def contacts_page(
    db: sqlite_utils.Database, owner_id: str, campaign_id: str, *, page: int, limit: int
) -> dict[str, Any]:
    get_row(db, owner_id, campaign_id)
    total = db.execute("SELECT COUNT(*) FROM campaign_contacts WHERE campaign_id = ?", [campaign_id]).fetchone()[0]
    rows = list(
        db.query(
            "SELECT * FROM campaign_contacts WHERE campaign_id = ? ORDER BY id LIMIT ? OFFSET ?",
            [campaign_id, limit, (page - 1) * limit],
        )
    )
    attempts: dict[int, list[dict[str, Any]]] = {r["id"]: [] for r in rows}
    if rows:
        ids = [r["id"] for r in rows]
        for a in db.query(
            "SELECT a.*, (SELECT COALESCE(SUM(u.total_cost_nanos), 0) FROM usage_events u "
            "WHERE u.session_id = a.session_id) AS cost_nanos FROM campaign_attempts a "
            f"WHERE a.contact_id IN ({in_marks(ids)}) ORDER BY a.contact_id, a.attempt",
            ids,
        ):
            attempts[a["contact_id"]].append(a)
    out = []
    for r in rows:
        out.append(
            {
                **r,
                "variables": json.loads(r["variables"]) if r["variables"] else None,
                "attempt_rows": attempts[r["id"]],
            }
        )
    return {"contacts": out, "total": total}


# ---- the do-not-call list ----


def dnc_add(db: sqlite_utils.Database, owner_id: str, numbers: list[str]) -> int:
    now = now_iso()
    return sum(
        db.execute(
            "INSERT INTO do_not_call (owner_id, phone_number, created_at) VALUES (?,?,?) ON CONFLICT DO NOTHING",
            [owner_id, n, now],
        ).rowcount
        for n in numbers
    )


def dnc_list(db: sqlite_utils.Database, owner_id: str) -> list[dict[str, Any]]:
    return list(
        db.query(
            "SELECT phone_number, created_at FROM do_not_call WHERE owner_id = ? ORDER BY created_at, phone_number",
            [owner_id],
        )
    )


def dnc_remove(db: sqlite_utils.Database, owner_id: str, number: str) -> None:
    cur = db.execute("DELETE FROM do_not_call WHERE owner_id = ? AND phone_number = ?", [owner_id, number])
    if not cur.rowcount:
        raise NotFoundError(f"{number} is not on the do-not-call list")


# ---- the dialer's steps (api/services/dialer.py) ----


def to_dial(db: sqlite_utils.Database) -> list[dict[str, Any]]:
    """The campaigns the dialer looks at: the running ones, and paused or cancelled ones with calls still in flight
    (their outcomes are counted as they end)."""
    return [
        _record(r)
        for r in db.query(
            "SELECT * FROM campaigns c WHERE status = 'running' OR (status IN ('paused', 'cancelled') AND EXISTS "
            "(SELECT 1 FROM campaign_contacts k WHERE k.campaign_id = c.id AND k.status = 'in_progress')) "
            "ORDER BY created_at"
        )
    ]


def outcome_of(call: dict[str, Any]) -> str:
    """An ended phone call as a campaign outcome."""
    status, reason = call["status"], call.get("end_reason") or ""
    if status == "COMPLETED":
        return "voicemail" if reason == "voicemail" else "completed"
    if status == "NO_ANSWER" or reason == "no_answer":
        return "no_answer"
    if reason == "busy":
        return "busy"
    return "failed"


def settle(db: sqlite_utils.Database, campaign: dict[str, Any], now: str, retry_at: str) -> list[dict[str, Any]]:
    """The campaign's attempts whose call ended get their outcome, and their contact its next state: ``retrying``
    (due at `retry_at`) when the retry policy covers the outcome and attempts remain, else the outcome. Returns the
    attempts settled now."""
    retry = campaign["retry"] or DEFAULT_RETRY
    settled = []
    for a in list(
        db.query(
            "SELECT a.*, c.status AS call_status, c.end_reason AS call_end_reason, c.sip_status_code AS call_sip, "
            "k.attempts AS contact_attempts FROM campaign_attempts a JOIN outbound_calls c ON c.id = a.call_id "
            "JOIN campaign_contacts k ON k.id = a.contact_id WHERE a.campaign_id = ? AND a.status = 'in_progress'",
            [campaign["id"]],
        )
    ):
        if a["call_status"] not in phone_calls.TERMINAL:
            continue
        outcome = outcome_of({"status": a["call_status"], "end_reason": a["call_end_reason"]})
        db.execute(
            "UPDATE campaign_attempts SET status = ?, end_reason = ?, sip_status_code = ?, ended_at = ? WHERE id = ?",
            [outcome, a["call_end_reason"], a["call_sip"], now, a["id"]],
        )
        again = (
            campaign["status"] != "cancelled"
            and outcome in retry["on"]
            and a["contact_attempts"] < retry["max_attempts"]
        )
        db.execute(
            "UPDATE campaign_contacts SET status = ?, next_attempt_at = ?, updated_at = ? WHERE id = ?",
            ["retrying" if again else outcome, retry_at if again else None, now, a["contact_id"]],
        )
        settled.append({**a, "status": outcome})
    return settled


def recent_outcomes(db: sqlite_utils.Database, campaign_id: str, since: str) -> list[str]:
    return [
        r[0]
        for r in db.execute(
            "SELECT status FROM campaign_attempts WHERE campaign_id = ? AND ended_at >= ? AND status != 'in_progress'",
            [campaign_id, since],
        )
    ]


def in_flight(db: sqlite_utils.Database, campaign_id: str) -> int:
    return int(
        db.execute(
            "SELECT COUNT(*) FROM campaign_contacts WHERE campaign_id = ? AND status = 'in_progress'", [campaign_id]
        ).fetchone()[0]
    )


def claim(db: sqlite_utils.Database, campaign: dict[str, Any], n: int, now: str) -> list[dict[str, Any]]:
    """Up to `n` due contacts (pending, or retrying and due), each moved to ``in_progress`` with a new attempt
    naming the phone call it will be (`call_id`, made here): the attempt exists before the dial, so a dialer that
    stops between the two never dials that contact again for it. A contact on the do-not-call list is set aside."""
    cid = campaign["id"]
    db.execute(
        "UPDATE campaign_contacts SET status = 'do_not_call', updated_at = ? WHERE campaign_id = ? "
        "AND status IN ('pending', 'retrying') AND phone_number IN "
        "(SELECT phone_number FROM do_not_call WHERE owner_id = ?)",
        [now, cid, campaign["owner_id"]],
    )
    due = list(
        db.query(
            "SELECT * FROM campaign_contacts WHERE campaign_id = ? AND (status = 'pending' OR "
            "(status = 'retrying' AND next_attempt_at <= ?)) ORDER BY status = 'pending', next_attempt_at, id "
            "LIMIT ?",
            [cid, now, n],
        )
    )
    claimed = []
    for c in due:
        cur = db.execute(
            "UPDATE campaign_contacts SET status = 'in_progress', attempts = attempts + 1, next_attempt_at = NULL, "
            "updated_at = ? WHERE id = ? AND status IN ('pending', 'retrying')",
            [now, c["id"]],
        )
        if cur.rowcount != 1:
            continue
        call_id = f"call_{uuid.uuid4().hex[:20]}"
        db.execute(
            "INSERT INTO campaign_attempts (contact_id, campaign_id, owner_id, attempt, call_id, status, started_at) "
            "VALUES (?,?,?,?,?,'in_progress',?)",
            [c["id"], cid, campaign["owner_id"], c["attempts"] + 1, call_id, now],
        )
        claimed.append(
            {
                **c,
                "attempt": c["attempts"] + 1,
                "call_id": call_id,
                "variables": json.loads(c["variables"]) if c["variables"] else None,
            }
        )
    return claimed


def placed(db: sqlite_utils.Database, call_id: str, session_id: str) -> None:
    db.execute("UPDATE campaign_attempts SET session_id = ? WHERE call_id = ?", [session_id, call_id])


def not_placed(db: sqlite_utils.Database, call_id: str, *, reason: str, now: str, give_back: bool) -> None:
    """A claimed attempt that was never dialled: given back (the contact due again, the attempt forgotten) when it
    could not start for a passing reason (the tenant's call limit), else failed with the reason. An attempt whose
    phone call exists (its dispatch failed after it was reserved) is left to `settle`, like any ended call."""
    a = db.execute("SELECT id, contact_id FROM campaign_attempts WHERE call_id = ?", [call_id]).fetchone()
    if a is None or db.execute("SELECT 1 FROM outbound_calls WHERE id = ?", [call_id]).fetchone() is not None:
        return
    if give_back:
        db.execute("DELETE FROM campaign_attempts WHERE id = ?", [a[0]])
        db.execute(
            "UPDATE campaign_contacts SET status = CASE WHEN attempts > 1 THEN 'retrying' ELSE 'pending' END, "
            "next_attempt_at = ?, attempts = attempts - 1, updated_at = ? WHERE id = ?",
            [now, now, a[1]],
        )
        return
    db.execute(
        "UPDATE campaign_attempts SET status = 'failed', end_reason = ?, ended_at = ? WHERE id = ?", [reason, now, a[0]]
    )
    db.execute("UPDATE campaign_contacts SET status = 'failed', updated_at = ? WHERE id = ?", [now, a[1]])


def orphans(db: sqlite_utils.Database, campaign_id: str, before: str) -> list[str]:
    """Attempts claimed before `before` whose phone call was never made (the dialer stopped in between)."""
    return [
        r[0]
        for r in db.execute(
            "SELECT a.call_id FROM campaign_attempts a WHERE a.campaign_id = ? AND a.status = 'in_progress' "
            "AND a.started_at < ? AND NOT EXISTS (SELECT 1 FROM outbound_calls c WHERE c.id = a.call_id)",
            [campaign_id, before],
        )
    ]


def finished(db: sqlite_utils.Database, campaign_id: str) -> bool:
    return (
        db.execute(
            f"SELECT 1 FROM campaign_contacts WHERE campaign_id = ? AND status IN ({in_marks(list(OPEN))}) LIMIT 1",
            [campaign_id, *OPEN],
        ).fetchone()
        is None
    )
