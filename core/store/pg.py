"""PostgreSQL under the same repository functions as SQLite (``VOXARENA_DATABASE_URL=postgresql://...``).

The repositories are synchronous functions of one database handle (``db.execute``, ``db.query``, ``db.conn``) run
on the store's threads; ``PgDatabase`` is that handle over one pg8000 connection (pure Python, BSD licence), so the
same functions run on either engine. The SQL they write is the common subset of both dialects: ``?`` placeholders
(rewritten here to ``$n`` once per statement text), ``INSERT ... ON CONFLICT``, ``RETURNING``, ``CASE`` instead of
summing booleans; where the engines differ, ``core.store.dialect`` gives each its own fragment.

The schema is a baseline (``pg_schema.sql``, equal to SQLite's after its migration ``BASELINE``) plus SQLite's later
steps in PostgreSQL's types, applied under an advisory lock so that nodes starting at once apply each step once.
Money is integer nano-USD in BIGINT; sums of BIGINT come back from PostgreSQL as NUMERIC and are read as Python ints
here."""

from __future__ import annotations

import contextlib
import functools
import logging
import re
import ssl
from collections import OrderedDict
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

import pg8000.native
from pg8000.converters import make_params
from pg8000.exceptions import DatabaseError, InterfaceError

__all__ = ["InterfaceError", "PgDatabase", "migrate"]

from core.store.errors import IntegrityViolation, StorageUnavailable
from core.store.timefmt import now_iso

log = logging.getLogger("voxarena.store")

SCHEMES = ("postgresql://", "postgres://")
PG_SCHEMA = Path(__file__).with_name("pg_schema.sql")
# SQLite's migration whose schema the baseline equals: a PostgreSQL database records versions 1..BASELINE at once.
BASELINE = 16


def _pg_steps() -> list[tuple[int, str, str]]:
    """SQLite's steps after the baseline, in PostgreSQL's types (every integer BIGINT). A step written as Python
    (a data migration) has no PostgreSQL form here yet: adding one must add it."""
    from core.store.migrations import MIGRATIONS

    steps = []
    for version, name, step in MIGRATIONS:
        if version <= BASELINE:
            continue
        if not isinstance(step, str):
            raise TypeError(f"migration {version} ({name}) is Python: write its PostgreSQL form in core/store/pg.py")
        steps.append((version, name, re.sub(r"\bINTEGER\b", "BIGINT", step)))
    return steps


# pg_advisory_lock key for migrations: "voxa" in ASCII.
MIGRATION_LOCK = 0x766F7861
_NUMERIC = 1700
_IN_TRANSACTION = (b"T", b"E")
CONNECT_TIMEOUT = 10.0
# Prepared statements kept per connection (least recently used out).
PREPARED_STATEMENTS = 256
# serialization_failure, deadlock_detected: the transaction may simply run again.
RETRY_STATES = ("40001", "40P01")


def is_url(target: object) -> bool:
    return isinstance(target, str) and target.startswith(SCHEMES)


def redact(url: str) -> str:
    """The URL without its password, for logs and errors."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
    return parts._replace(netloc=netloc).geturl()


def connect_args(url: str) -> dict[str, Any]:
    """pg8000's arguments from a libpq-style URL: user, password, host (or ``?host=/socket/dir``), port, database,
    ``sslmode=require|verify-full``."""
    if not is_url(url):
        raise ValueError("a PostgreSQL URL starts with postgresql://")
    parts = urlsplit(url)
    query = {k: v[-1] for k, v in parse_qs(parts.query).items()}
    args: dict[str, Any] = {
        "user": unquote(parts.username or query.get("user", "postgres")),
        "database": unquote(parts.path.lstrip("/")) or None,
        "port": parts.port or int(query.get("port", 5432)),
        "timeout": CONNECT_TIMEOUT,
        "application_name": "voxarena",
    }
    if parts.password is not None:
        args["password"] = unquote(parts.password)
    host = query.get("host") or (unquote(parts.hostname) if parts.hostname else "")
    if host.startswith("/"):
        args["unix_sock"] = f"{host.rstrip('/')}/.s.PGSQL.{args['port']}"
    else:
        args["host"] = host or "localhost"
    mode = query.get("sslmode", "disable")
    if mode in ("require", "verify-ca", "verify-full"):
        ctx = ssl.create_default_context()
        if mode == "require":
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
        args["ssl_context"] = ctx
    return args


@functools.lru_cache(maxsize=4096)
def translate(sql: str) -> str:
    """``?`` placeholders outside quotes become ``$1..$n``; SQLite's ``BEGIN IMMEDIATE`` is PostgreSQL's BEGIN."""
    if sql.startswith("BEGIN IMMEDIATE"):
        return "BEGIN"
    if "?" not in sql:
        return sql
    out, n, quote = [], 0, ""
    for ch in sql:
        if quote:
            quote = "" if ch == quote else quote
        elif ch in ("'", '"'):
            quote = ch
        elif ch == "?":
            n += 1
            out.append(f"${n}")
            continue
        out.append(ch)
    return "".join(out)


def _param(v: Any) -> Any:
    # SQLite binds True as 1; the INTEGER columns here take 0/1 too.
    if v is True or v is False:
        return int(v)
    return v


def _numeric(text: str) -> int | float:
    """NUMERIC (what SUM of BIGINT gives): an int when whole, else a float (AVG)."""
    try:
        return int(text)
    except ValueError:
        return float(text)


def sqlstate(e: BaseException) -> str:
    if isinstance(e, DatabaseError) and e.args and isinstance(e.args[0], dict):
        return str(e.args[0].get("C", ""))
    return ""


def message(e: BaseException) -> str:
    if isinstance(e, DatabaseError) and e.args and isinstance(e.args[0], dict):
        return str(e.args[0].get("M", e))
    return str(e)


def lost(e: BaseException) -> bool:
    """The connection is gone (server restarted, network cut): a new connection may succeed."""
    if isinstance(e, InterfaceError | OSError | ConnectionError | EOFError):
        return True
    code = sqlstate(e)
    return code.startswith("08") or code in ("57P01", "57P02", "57P03")


def storage_reason(e: BaseException) -> str | None:
    """A failure of the database server rather than of the statement, in words (with the SQLSTATE)."""
    if isinstance(e, StorageUnavailable):
        return str(e)
    if lost(e):
        return f"the PostgreSQL server cannot be reached ({message(e)})"
    code = sqlstate(e)
    if code.startswith("53"):
        return f"the PostgreSQL server is out of resources ({code}: {message(e)})"
    if code.startswith("58") or code == "25006":
        return f"the PostgreSQL server cannot write ({code}: {message(e)})"
    return None


class PgCursor:
    """What the repositories use of a sqlite3 cursor: rows as tuples, ``rowcount``, ``description``."""

    __slots__ = ("description", "rowcount", "rows")

    def __init__(self, rows: list[tuple[Any, ...]], rowcount: int, columns: list[dict[str, Any]] | None) -> None:
        self.rows = rows
        self.rowcount = rowcount
        self.description = [(c["name"],) for c in columns] if columns else None

    def fetchone(self) -> tuple[Any, ...] | None:
        return self.rows[0] if self.rows else None

    def fetchall(self) -> list[tuple[Any, ...]]:
        return list(self.rows)

    def __iter__(self) -> Iterator[tuple[Any, ...]]:
        return iter(self.rows)


class PgDatabase:
    """One PostgreSQL connection with the interface the repositories and the store's writer use (the handle is its
    own ``conn``). Autocommit unless a ``BEGIN`` is open; a unique or foreign-key violation raises the store's
    ``IntegrityViolation``."""

    dialect = "postgresql"

    def __init__(self, url: str, *, read_only: bool = False) -> None:
        self.url = url
        self.raw = pg8000.native.Connection(**connect_args(url))
        # pg8000's timeout covers every read of the socket, not only the connect: a statement longer than it (a
        # migration, a large report) would fail. Once connected, reads wait; TCP keepalive notices a dead peer.
        self.raw._usock.settimeout(None)
        self.raw.register_in_adapter(_NUMERIC, _numeric)
        self.total_changes = 0
        # statement text -> pg8000's prepared statement (name, columns, input converters): a statement run again is
        # one round trip (bind and execute) instead of three (parse, describe, then bind and execute)
        self._prepared: OrderedDict[str, tuple[bytes, Any, Any]] = OrderedDict()
        if read_only:
            self.raw.execute_simple("SET default_transaction_read_only = on")

    @property
    def conn(self) -> PgDatabase:
        return self

    @property
    def in_transaction(self) -> bool:
        return self.raw._transaction_status in _IN_TRANSACTION

    def execute(self, sql: str, params: Sequence[Any] | dict[str, Any] = ()) -> PgCursor:
        if isinstance(params, dict):
            raise TypeError("named parameters are not used with PostgreSQL; pass a list for ? placeholders")
        try:
            if params:
                ctx = self._run_prepared(translate(sql), [_param(v) for v in params])
            else:
                ctx = self.raw.execute_simple(translate(sql))
        except DatabaseError as e:
            if sqlstate(e).startswith("23"):
                raise IntegrityViolation(message(e), constraint=str(e.args[0].get("n", ""))) from None
            raise
        rows = ctx.rows
        if rows is None and ctx.row_count > 0:
            self.total_changes += ctx.row_count
        return PgCursor([tuple(r) for r in rows] if rows else [], ctx.row_count, ctx.columns)

    def _run_prepared(self, sql: str, vals: list[Any]) -> Any:
        prepared = self._prepared.get(sql)
        if prepared is None:
            prepared = self.raw.prepare_statement(sql, ())
            self._prepared[sql] = prepared
            if len(self._prepared) > PREPARED_STATEMENTS:
                _, (name, _, _) = self._prepared.popitem(last=False)
                self.raw.close_prepared_statement(name)
        else:
            self._prepared.move_to_end(sql)
        name, columns, input_funcs = prepared
        return self.raw.execute_named(name, make_params(self.raw.py_types, vals), columns, input_funcs, sql)

    def executemany(self, sql: str, seq: Sequence[Sequence[Any]]) -> None:
        for params in seq:
            self.execute(sql, params)

    def executescript(self, script: str) -> None:
        self.raw.execute_simple(script)

    def query(self, sql: str, params: Sequence[Any] = ()) -> Iterator[dict[str, Any]]:
        cur = self.execute(sql, params)
        names = [d[0] for d in cur.description or ()]
        for row in cur.rows:
            yield dict(zip(names, row, strict=True))

    def close(self) -> None:
        with contextlib.suppress(Exception):  # already gone
            self.raw.close()


def migrate(db: PgDatabase) -> None:
    """The baseline schema on an empty database, then each missing step, under an advisory lock (several nodes
    starting at once: the first applies, the others wait and find nothing to do)."""
    db.execute(f"SELECT pg_advisory_lock({MIGRATION_LOCK})")
    try:
        exists = db.execute("SELECT to_regclass('_migrations') IS NOT NULL").fetchone()
        if not (exists and exists[0]):
            db.execute("BEGIN")
            try:
                db.executescript(PG_SCHEMA.read_text())
                now = now_iso()
                for version in range(1, BASELINE + 1):
                    db.execute(
                        "INSERT INTO _migrations (version, name, applied_at) VALUES (?, ?, ?)",
                        [version, "baseline" if version == BASELINE else "in baseline", now],
                    )
                db.execute("COMMIT")
            except BaseException:
                db.execute("ROLLBACK")
                raise
            log.info("PostgreSQL schema created at migration %d (baseline)", BASELINE)
        have = {r[0] for r in db.execute("SELECT version FROM _migrations")}
        for version, name, sql in _pg_steps():
            if version in have:
                continue
            db.execute("BEGIN")
            try:
                db.executescript(sql)
                db.execute(
                    "INSERT INTO _migrations (version, name, applied_at) VALUES (?, ?, ?)", [version, name, now_iso()]
                )
                db.execute("COMMIT")
            except BaseException:
                db.execute("ROLLBACK")
                raise
            log.info("PostgreSQL migration %d applied: %s", version, name)
    finally:
        db.execute(f"SELECT pg_advisory_unlock({MIGRATION_LOCK})")


_IDENT = re.compile(r"^[a-z_][a-z0-9_]*$")


def identity_columns(db: PgDatabase) -> list[tuple[str, str]]:
    """(table, column) of every identity column, to move their sequences past copied ids."""
    rows = db.execute(
        "SELECT table_name, column_name FROM information_schema.columns "
        "WHERE table_schema = current_schema() AND is_identity = 'YES'"
    )
    return [(t, c) for t, c in rows if _IDENT.match(t) and _IDENT.match(c)]
