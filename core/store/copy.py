"""``voxarena db copy --to postgresql://...``: an existing SQLite database into an empty PostgreSQL one, in one
transaction, verified (every table's row count and the ledger's totals equal on both sides) before it commits."""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from core.store import pg
from core.store.db import connect, prepare
from core.store.migrations import migrate

log = logging.getLogger("voxarena.store")

CHUNK = 500
# Money in the ledger, summed on both sides after the copy: (what, SQL).
LEDGER_TOTALS = (
    ("usage_events.total_cost_nanos", "SELECT COALESCE(SUM(total_cost_nanos), 0) FROM usage_events"),
    ("cost_rollups.total_cost_nanos", "SELECT COALESCE(SUM(total_cost_nanos), 0) FROM cost_rollups"),
    ("session_costs.total_cost_nanos", "SELECT COALESCE(SUM(total_cost_nanos), 0) FROM session_costs"),
    ("cost_events.cost_nanos", "SELECT COALESCE(SUM(cost_nanos), 0) FROM cost_events"),
)


class CopyRefused(Exception):
    """The copy cannot start (target not empty, source missing) or did not verify; nothing was committed."""


@dataclass
class CopyReport:
    rows: dict[str, int] = field(default_factory=dict)
    totals: dict[str, int] = field(default_factory=dict)

    def lines(self) -> list[str]:
        out = [f"{table:24} {n:>10} rows (equal)" for table, n in self.rows.items()]
        out += [f"{what:32} {n:>20} nano-USD (equal)" for what, n in self.totals.items()]
        return out


def _tables(db: pg.PgDatabase) -> list[str]:
    """The target's tables in the order their rows can be inserted (referenced tables first)."""
    order = []
    for stmt in pg.PG_SCHEMA.read_text().split(";"):
        words = stmt.split()
        for i, w in enumerate(words[:-2]):
            if w == "CREATE" and words[i + 1] == "TABLE":
                order.append(words[i + 2])
    present = {
        r[0]
        for r in db.execute("SELECT table_name FROM information_schema.tables WHERE table_schema = current_schema()")
    }
    return [t for t in order if t in present and t != "_migrations"]


def copy_sqlite_to_postgres(
    source: Path, url: str, *, progress: Callable[[str], None] = lambda line: None
) -> CopyReport:
    if not source.exists():
        raise CopyRefused(f"{source} does not exist")
    prepare(source)
    src = connect(source)
    try:
        migrate(src)  # the source at the current schema, so its columns are the target's
        target = pg.PgDatabase(url)
        try:
            pg.migrate(target)
            return _copy(src.conn, target, progress)
        finally:
            target.close()
    finally:
        src.conn.close()


def _copy(src: sqlite3.Connection, target: pg.PgDatabase, progress: Callable[[str], None]) -> CopyReport:
    tables = _tables(target)
    busy = [t for t in tables if target.execute(f"SELECT 1 FROM {t} LIMIT 1").fetchone()]
    if busy:
        raise CopyRefused(f"the target database is not empty ({', '.join(busy)} hold rows); copy into an empty one")
    report = CopyReport()
    target.execute("BEGIN")
    try:
        src.execute("BEGIN")  # one snapshot of the source
        for table in tables:
            target_cols = [
                r[0]
                for r in target.execute(
                    "SELECT column_name FROM information_schema.columns WHERE table_schema = current_schema() "
                    "AND table_name = ? ORDER BY ordinal_position",
                    [table],
                )
            ]
            source_cols = {r[1] for r in src.execute(f"PRAGMA table_info({table})")}
            cols = [c for c in target_cols if c in source_cols]
            missing = set(source_cols) - set(cols)
            if missing:
                raise CopyRefused(f"{table}: the target has no column for {', '.join(sorted(missing))}")
            n = 0
            cur = src.execute(f"SELECT {', '.join(cols)} FROM {table}")
            while rows := cur.fetchmany(CHUNK):
                row_marks = "(" + ", ".join("?" * len(cols)) + ")"
                target.execute(
                    f"INSERT INTO {table} ({', '.join(cols)}) VALUES {', '.join([row_marks] * len(rows))}",
                    [v for row in rows for v in row],
                )
                n += len(rows)
            report.rows[table] = n
            progress(f"copied {table}: {n} rows")
        for table, column in pg.identity_columns(target):
            target.execute(
                f"SELECT setval(pg_get_serial_sequence('{table}', '{column}'), "
                f"COALESCE((SELECT MAX({column}) FROM {table}), 0) + 1, false)"
            )
        _verify(src, target, report)
        target.execute("COMMIT")
    except BaseException:
        if target.in_transaction:
            target.execute("ROLLBACK")
        raise
    finally:
        src.execute("ROLLBACK")
    return report


def _verify(src: sqlite3.Connection, target: pg.PgDatabase, report: CopyReport) -> None:
    for table, n in report.rows.items():
        (there,) = target.execute(f"SELECT COUNT(*) FROM {table}").fetchone() or (None,)
        (here,) = src.execute(f"SELECT COUNT(*) FROM {table}").fetchone()
        if not here == there == n:
            raise CopyRefused(f"{table}: {here} rows in SQLite, {there} in PostgreSQL after the copy; rolled back")
    for what, sql in LEDGER_TOTALS:
        (here,) = src.execute(sql).fetchone()
        (there,) = target.execute(sql).fetchone() or (None,)
        if int(here) != int(there):
            raise CopyRefused(f"{what}: {here} in SQLite, {there} in PostgreSQL after the copy; rolled back")
        report.totals[what] = int(here)
