"""What the store's outboxes share (the outbound-call callbacks' ``call_events``, the agents' ``webhook_outbox``):
claiming due rows for one sender at a time."""

from __future__ import annotations

from typing import Any

import sqlite_utils

_OUTBOXES = ("call_events", "webhook_outbox")


def claim(
    db: sqlite_utils.Database, table: str, due: list[dict[str, Any]], now: str, until: str
) -> list[dict[str, Any]]:
    """The `due` rows, claimed for this sender until ``until``: their ``deliver_after`` moves there, so no other
    sender (another node) sees them due while this one delivers; the attempt's record then sets the real next time
    (or delivers them). A sender that dies mid-attempt leaves its claim to expire, and the row is tried again. Two
    senders racing for one row: the second's UPDATE finds it no longer due and skips it."""
    if table not in _OUTBOXES:
        raise ValueError(f"not an outbox: {table}")
    claimed = []
    for row in due:
        cur = db.execute(
            f"UPDATE {table} SET deliver_after = ? WHERE id = ? AND delivered_at IS NULL AND given_up = 0 "
            "AND deliver_after <= ?",
            [until, row["id"], now],
        )
        if cur.rowcount == 1:
            claimed.append(row)
    return claimed


def any_due(db: sqlite_utils.Database, table: str, now: str) -> bool:
    """Whether a row of the outbox is due: a read, so that an idle sender writes nothing."""
    if table not in _OUTBOXES:
        raise ValueError(f"not an outbox: {table}")
    return (
        db.execute(
            f"SELECT 1 FROM {table} WHERE delivered_at IS NULL AND given_up = 0 AND deliver_after <= ? LIMIT 1", [now]
        ).fetchone()
        is not None
    )
