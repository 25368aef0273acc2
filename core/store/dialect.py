"""SQL fragments that differ between the two engines; everything else the repositories write is common SQL."""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterator, Sized
from typing import Any

_KEY = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*$")


def is_postgres(db: Any) -> bool:
    return getattr(db, "dialect", "sqlite") == "postgresql"


def json_text(db: Any, column: str, path: str) -> str:
    """The text at ``path`` (dotted keys) of a JSON text column: SQLite's json_extract, PostgreSQL's #>>."""
    if not _KEY.match(path):
        raise ValueError(f"not a JSON key path: {path!r}")
    if is_postgres(db):
        return f"(NULLIF({column}, '')::jsonb #>> '{{{path.replace('.', ',')}}}')"
    return f"json_extract({column}, '$.{path}')"


@contextlib.contextmanager
def snapshot(db: Any, name: str = "snapshot") -> Iterator[None]:
    """Several reads that see one state of the database: a savepoint inside a transaction that is already open (a
    write), else a transaction of its own (SQLite's SAVEPOINT starts one; PostgreSQL's needs BEGIN, at REPEATABLE
    READ so that every statement reads the same snapshot)."""
    if is_postgres(db) and not db.conn.in_transaction:
        db.execute("BEGIN ISOLATION LEVEL REPEATABLE READ")
        try:
            yield
        finally:
            db.execute("COMMIT")
        return
    db.execute(f"SAVEPOINT {name}")
    try:
        yield
    finally:
        db.execute(f"RELEASE {name}")


def count_if(condition: str) -> str:
    """How many rows meet ``condition`` (PostgreSQL has no SUM of a boolean)."""
    return f"SUM(CASE WHEN {condition} THEN 1 ELSE 0 END)"


def marks(values: Sized) -> str:
    """Placeholders for ``IN (...)``: one ``?`` per value, ``NULL`` for none (PostgreSQL refuses ``IN ()``; both
    engines find nothing in ``IN (NULL)``)."""
    return ", ".join("?" * len(values)) or "NULL"


def lock_for_transaction(db: Any, key: str) -> None:
    """Serialise the transactions that touch ``key`` (a count then an insert, say) until they end: PostgreSQL's
    transaction-level advisory lock, since several nodes write at once; nothing on SQLite, whose one writer already
    runs one transaction at a time."""
    if is_postgres(db):
        db.execute("SELECT pg_advisory_xact_lock(hashtextextended(?, 0))", [key])
