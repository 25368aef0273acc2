"""SQLite through sqlite-utils: connections, pragmas, and the async boundary.

Reads run on a small pool of reader threads, each with its own connection. Every write goes through one writer
thread that groups whatever writes are queued into one transaction (each write in its own SAVEPOINT, so one failing
write rolls back alone) and commits once: the group commit keeps metering ingest fast without ever letting two
writers race for SQLite's lock inside this process. Job processes open their own ``Store`` on the same file; WAL
and ``busy_timeout`` arbitrate between processes.

The files hold transcripts and sealed secrets: the directory is kept 0700 and the database files 0600 (SQLite gives
its -wal and -shm files the database file's mode). A failure of the storage itself (disk full, read-only, I/O error,
cannot open) is a ``StorageUnavailable``: the caller gets a reason instead of SQLite's code, the store reports itself
degraded until a write succeeds again, and nothing stops. At start the same conditions refuse to open.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import queue
import sqlite3
import stat
import threading
import time
import uuid
from collections.abc import Callable
from concurrent.futures import Future, InvalidStateError, ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import sqlite_utils

from core.store import pg
from core.store.errors import StorageUnavailable
from core.store.migrations import migrate
from core.store.timefmt import now_iso

if TYPE_CHECKING:
    from core.secrets import SecretBox

log = logging.getLogger("voxarena.store")

T = TypeVar("T")

BUSY_TIMEOUT_MS = 10_000
MAX_GROUP = 512
# How long the writer keeps reconnecting to a PostgreSQL server that went away before failing the waiting writes.
RECONNECT_SECONDS = 30.0
# The files SQLite keeps beside the database (WAL mode, and a rollback journal if one is ever left behind).
SIDE_FILES = ("-wal", "-shm", "-journal")

# SQLite's primary result codes that mean the storage failed, not the statement.
_STORAGE_CODES = {
    sqlite3.SQLITE_FULL: "the disk holding the database is full",
    sqlite3.SQLITE_READONLY: "the database is read-only",
    sqlite3.SQLITE_IOERR: "an I/O error on the database files",
    sqlite3.SQLITE_CANTOPEN: "the database files cannot be opened",
}


def storage_reason(e: BaseException) -> str | None:
    """What a storage failure means in words (with SQLite's code name), or None for any other error."""
    if not isinstance(e, sqlite3.Error):
        return None
    code = getattr(e, "sqlite_errorcode", None)
    reason = _STORAGE_CODES.get(code & 0xFF) if code is not None else None
    return f"{reason} ({e.sqlite_errorname})" if reason else None


def private_dir(path: Path) -> None:
    """Create the directory 0700, or tighten an existing one that others can read (said in the log). A shared
    sticky directory (/tmp) is never changed: other programs' files live there."""
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    mode = path.stat().st_mode
    if mode & 0o077 and not mode & stat.S_ISVTX:
        try:
            path.chmod(0o700)
            log.warning("data dir %s was mode %o (open to other users); tightened to 700", path, mode & 0o777)
        except OSError as e:
            log.warning(
                "data dir %s is mode %o (open to other users) and cannot be tightened: %s",
                path,
                mode & 0o777,
                e.strerror,
            )


def private_files(db_path: Path) -> None:
    """The database 0600 from its first byte (created here, not by SQLite with the umask's mode); an existing
    database or side file others can read is tightened (said in the log)."""
    try:
        os.close(os.open(db_path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600))
    except FileExistsError:
        pass
    except OSError as e:
        raise StorageUnavailable(f"cannot create the database {db_path}: {e.strerror}") from None
    for path in [db_path, *(Path(f"{db_path}{suffix}") for suffix in SIDE_FILES)]:
        try:
            mode = path.stat().st_mode
            if mode & 0o077:
                path.chmod(0o600)
                log.warning("%s was mode %o (open to other users); tightened to 600", path, mode & 0o777)
        except FileNotFoundError:
            continue
        except OSError as e:
            log.warning("%s cannot be tightened to mode 600: %s", path, e.strerror)


def prepare(db_path: Path) -> None:
    """Before the first connection: a private directory and files, and storage that can be written."""
    private_dir(db_path.parent)
    private_files(db_path)
    check_writable(db_path)


def check_writable(db_path: Path) -> None:
    """Refuse to start on storage that cannot be written, naming what is in the way: a file made and removed in the
    directory, and an access check of each database file. Started anyway, a read-only database would fail every
    write, and a -shm file that cannot be written (immutable, say) is mapped into memory by SQLite, where a failure
    is a SIGBUS that ends the process instead of an error. (The database files are not opened here: closing a
    descriptor of a file drops every POSIX lock this process holds on it, SQLite's included.)"""
    directory = db_path.parent
    probe = directory / f".voxarena-probe-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    try:
        os.close(os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
        probe.unlink()
    except OSError as e:
        raise StorageUnavailable(f"the data dir {directory} is not writable ({e.strerror})") from None
    for path in [db_path, *(Path(f"{db_path}{suffix}") for suffix in SIDE_FILES)]:
        if path.exists() and not os.access(path, os.R_OK | os.W_OK):
            raise StorageUnavailable(
                f"{path} is not writable: the database is read-only until that is fixed "
                "(its mode or owner, an immutable flag (lsattr), a read-only mount)"
            )


def connect(path: Path | str) -> sqlite_utils.Database:
    conn = sqlite3.connect(str(path), isolation_level=None, check_same_thread=False, timeout=BUSY_TIMEOUT_MS / 1000)
    conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute("PRAGMA synchronous = NORMAL")
    conn.execute("PRAGMA foreign_keys = ON")
    conn.execute("PRAGMA temp_store = MEMORY")
    return sqlite_utils.Database(conn)


class _Write:
    __slots__ = ("args", "fn", "future")

    def __init__(self, fn: Callable[..., Any], args: tuple[Any, ...], future: Future[Any]) -> None:
        self.fn, self.args, self.future = fn, args, future


class Store:
    """The database (a SQLite file, or PostgreSQL: ``core/store/pg.py``) plus its writer thread and reader pool.

    On PostgreSQL the same threads hold one connection each; the writer's group commit is kept (several nodes'
    writers then run side by side, PostgreSQL arbitrating), a group whose connection is lost before its COMMIT (a
    server restart) or that loses a deadlock to another node is run again on a new connection, and a reader
    reconnects once. Only a connection lost at the COMMIT itself leaves an outcome unknown: those writes fail."""

    def __init__(self, target: Path | str, *, readers: int = 4, secrets: SecretBox | None = None) -> None:
        """Open (and migrate) the database: a SQLite file's path, or a ``postgresql://`` URL (``core.store.pg``).
        ``StorageUnavailable`` says why storage that cannot be written is refused. ``secrets`` seals what a
        pending SQLite migration must seal (see ``migrations.MigrationNeedsKey``)."""
        self.url: str | None = target if isinstance(target, str) and pg.is_url(target) else None
        self.path = Path(target) if self.url is None else None
        self.backend = "postgresql" if self.url else "sqlite"
        # (what failed, since when) while the storage fails; None when it works
        self._failure: tuple[str, str] | None = None
        if self.path is not None:
            prepare(self.path)
        try:
            db = self._connect()
            try:
                if isinstance(db, pg.PgDatabase):
                    pg.migrate(db)
                else:
                    migrate(db, secrets=secrets)
            finally:
                db.conn.close()
            writer_db = self._connect()
        except Exception as e:
            reason = self._reason(e)
            if reason is None:
                raise
            raise StorageUnavailable(f"cannot open the database {self.describe}: {reason}") from None
        self._queue: queue.SimpleQueue[_Write | None] = queue.SimpleQueue()
        self._writer = threading.Thread(
            target=self._write_loop, args=(writer_db,), name=f"voxarena-{self.backend}-writer", daemon=True
        )
        self._local = threading.local()
        self._readers = ThreadPoolExecutor(max_workers=readers, thread_name_prefix=f"voxarena-{self.backend}-reader")
        self._reader_dbs: list[Any] = []
        self._lock = threading.Lock()
        self._closed = False
        self._writer.start()

    @property
    def describe(self) -> str:
        """The database in words for logs (a URL without its password)."""
        return pg.redact(self.url) if self.url else str(self.path)

    def _connect(self, *, read_only: bool = False) -> Any:
        if self.url:
            return pg.PgDatabase(self.url, read_only=read_only)
        assert self.path is not None
        db = connect(self.path)
        if read_only:
            db.conn.execute("PRAGMA query_only = ON")
        return db

    def _reason(self, e: BaseException) -> str | None:
        return pg.storage_reason(e) if self.url else storage_reason(e)

    # ---- async API ----
    async def read(self, fn: Callable[..., T], *args: Any) -> T:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._readers, self._run_read, fn, args)

    async def write(self, fn: Callable[..., T], *args: Any) -> T:
        return await asyncio.wrap_future(self.submit(fn, *args))

    # ---- thread-safe API (usable from job threads and other loops) ----
    def submit(self, fn: Callable[..., T], *args: Any) -> Future[T]:
        if self._closed:
            raise RuntimeError("store is closed")
        fut: Future[T] = Future()
        self._queue.put(_Write(fn, args, fut))
        return fut

    def write_sync(self, fn: Callable[..., T], *args: Any) -> T:
        return self.submit(fn, *args).result()

    def read_sync(self, fn: Callable[..., T], *args: Any) -> T:
        return self._run_read(fn, args)

    @property
    def failure(self) -> str | None:
        """Why the storage is failing and since when, while it is (cleared by the next write that stores data)."""
        if self._failure is None:
            return None
        reason, since = self._failure
        return f"{reason}, since {since}; writes answer 503 until one succeeds"

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._queue.put(None)
        self._writer.join(timeout=30)
        self._readers.shutdown(wait=True)
        with self._lock:
            for db in self._reader_dbs:
                db.conn.close()
            self._reader_dbs.clear()

    # ---- internals ----
    def _reader_db(self) -> Any:
        db = getattr(self._local, "db", None)
        if db is None:
            db = self._connect(read_only=True)
            self._local.db = db
            with self._lock:
                self._reader_dbs.append(db)
        return db

    def _run_read(self, fn: Callable[..., T], args: tuple[Any, ...]) -> T:
        if self.url:
            return self._run_pg_read(fn, args)
        try:
            return fn(self._reader_db(), *args)
        except sqlite3.Error as e:
            # Readers are query_only by design: their READONLY is a write attempted in a read, a bug, not storage.
            if getattr(e, "sqlite_errorcode", 0) & 0xFF == sqlite3.SQLITE_READONLY:
                raise
            mapped = self._storage_error(e)
            if mapped is e:
                raise
            raise mapped from e

    def _run_pg_read(self, fn: Callable[..., T], args: tuple[Any, ...]) -> T:
        """A read on this thread's PostgreSQL connection; a connection found dead (the server restarted) is
        replaced and the read tried once more, since a read changes nothing."""
        for attempt in (1, 2):
            try:
                return fn(self._reader_db(), *args)
            except Exception as e:
                if pg.lost(e):
                    self._drop_reader()
                    if attempt == 1:
                        continue
                mapped = self._storage_error(e)
                if mapped is e:
                    raise
                raise mapped from e
        raise AssertionError("unreachable")

    def _drop_reader(self) -> None:
        db = getattr(self._local, "db", None)
        self._local.db = None
        if db is not None:
            with self._lock:
                if db in self._reader_dbs:
                    self._reader_dbs.remove(db)
            db.conn.close()

    def _storage_error(self, e: BaseException) -> BaseException:
        """A storage failure becomes a StorageUnavailable (and the store is degraded); other errors pass."""
        reason = self._reason(e)
        if reason is None:
            return e
        if self._failure is None:
            log.error("store degraded: %s; writes answer 503 until one succeeds", reason)
            self._failure = (reason, now_iso())
        else:
            self._failure = (reason, self._failure[1])
        return StorageUnavailable(f"the database cannot be used now: {reason}; try again later")

    def _fail(self, w: _Write, e: BaseException) -> None:
        _deliver(w, False, self._storage_error(e))

    def _write_loop(self, db: sqlite_utils.Database) -> None:
        try:
            while True:
                first = self._queue.get()
                if first is None:
                    return
                batch = [first]
                stop = False
                while len(batch) < MAX_GROUP:
                    try:
                        nxt = self._queue.get_nowait()
                    except queue.Empty:
                        break
                    if nxt is None:
                        stop = True
                        break
                    batch.append(nxt)
                # A caller that gave up (its task was cancelled) cancelled the future: skip it, never run it
                # half-seen.
                live = [w for w in batch if w.future.set_running_or_notify_cancel()]
                try:
                    while live and self._run_group(db, live) is _LOST:
                        # PostgreSQL went away (or chose this group as a deadlock's victim) before the commit:
                        # nothing of the group is stored, so the same writes run again on a new connection.
                        db, gave_up = self._reconnect(db, live)
                        if gave_up:
                            break
                except BaseException:
                    log.exception("store writer: group of %d writes failed unexpectedly", len(batch))
                    for w in live:
                        self._fail(w, RuntimeError("store writer failed; see the log"))
                if stop:
                    return
        finally:
            if db is not None:
                db.conn.close()

    def _reconnect(self, old: Any, live: list[_Write]) -> tuple[Any, bool]:
        """A new writer connection, tried with backoff for ``RECONNECT_SECONDS``. When the server stays away the
        group's writes fail as storage unavailable, and the connection returned is dead (the next group tries
        again)."""
        old.conn.close()
        deadline = time.monotonic() + RECONNECT_SECONDS
        delay = 0.1
        last: BaseException | None = None
        while time.monotonic() < deadline and not self._closed:
            time.sleep(delay)
            delay = min(delay * 2, 2.0)
            try:
                db = self._connect()
            except Exception as e:
                last = e
                if self._reason(e) is None:
                    break
                continue
            log.warning("store writer: reconnected to %s; retrying %d writes", self.describe, len(live))
            return db, False
        error = last or StorageUnavailable("the store is closing")
        for w in live:
            self._fail(w, error)
        return _DeadConnection(), True

    def _run_group(self, db: Any, live: list[_Write]) -> object:
        """One transaction for the batch, each write in its own SAVEPOINT. Nothing here may kill the thread: a
        failing write (or a failing SAVEPOINT around it) fails that write alone, and a failed BEGIN or COMMIT fails
        the writes of that group only. On PostgreSQL a connection lost before the COMMIT returns ``_LOST`` with no
        write answered (the caller retries them); lost at the COMMIT, the outcome is unknown and the writes fail."""
        conn = db.conn
        stored = False  # a write that succeeded changed rows
        try:
            conn.execute("BEGIN IMMEDIATE")
        except BaseException as e:
            if self._again(e):
                return _LOST
            for w in live:
                self._fail(w, e)
            return None
        results: list[tuple[_Write, bool, Any]] = []
        for w in live:
            try:
                conn.execute("SAVEPOINT w")
            except BaseException as e:
                if self._again(e):
                    return self._abandon(conn)
                results.append((w, False, e))
                continue
            changes_before = conn.total_changes
            try:
                value = w.fn(db, *w.args)
            except BaseException as e:
                if self._again(e):
                    return self._abandon(conn)
                results.append((w, False, e))
                if not _undo_savepoint(conn):
                    # The savepoint itself is gone (the write ended the transaction): the group cannot commit.
                    self._fail_group(conn, results, live, e)
                    return None
            else:
                try:
                    conn.execute("RELEASE w")
                except BaseException as e:
                    results.append((w, False, e))
                    if not _undo_savepoint(conn):
                        self._fail_group(conn, results, live, e)
                        return None
                else:
                    results.append((w, True, value))
                    stored = stored or conn.total_changes > changes_before
        try:
            conn.execute("COMMIT")
        except BaseException as e:
            if self._reason(e) is None:  # a storage failure is logged once, when the store becomes degraded
                log.error("commit failed for %d writes: %s", len(live), e)
            self._fail_group(conn, [], live, e)
            return None
        # Only a commit that stored something proves the storage works again (an empty one writes nothing), and
        # not while another write of the same group failed for storage reasons.
        storage_failed = any(not ok and self._reason(value) for _, ok, value in results)
        if self._failure is not None and stored and not storage_failed:
            log.warning(
                "store recovered: writes succeed again (failing since %s: %s)", self._failure[1], self._failure[0]
            )
            self._failure = None
        for w, ok, value in results:
            if ok:
                _deliver(w, True, value)
            else:
                self._fail(w, value)
        return None

    def _again(self, e: BaseException) -> bool:
        """On PostgreSQL: the connection is gone, or the group lost a deadlock or a serialization conflict with
        another node. The group's writes are then run again (none was answered)."""
        return self.url is not None and (pg.lost(e) or pg.sqlstate(e) in pg.RETRY_STATES)

    def _abandon(self, conn: Any) -> object:
        with contextlib.suppress(Exception):
            if conn.in_transaction:
                conn.execute("ROLLBACK")
        return _LOST

    def _fail_group(
        self,
        conn: sqlite3.Connection,
        results: list[tuple[_Write, bool, Any]],
        live: list[_Write],
        error: BaseException,
    ) -> None:
        """Roll the whole group back; each write fails with its own error if it had one, else with ``error``."""
        try:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
        except BaseException:
            log.exception("rollback failed")
        own = {id(w): value for w, ok, value in results if not ok}
        for w in live:
            self._fail(w, own.get(id(w), error))


_LOST = object()


class _DeadConnection:
    """The writer's connection while PostgreSQL cannot be reached: every statement fails as a lost connection, so
    the next group goes through ``Store._reconnect`` again."""

    @property
    def conn(self) -> _DeadConnection:
        return self

    in_transaction = False

    def execute(self, sql: str, *args: Any) -> Any:
        raise pg.InterfaceError("not connected to PostgreSQL")

    def close(self) -> None:
        pass


def _undo_savepoint(conn: sqlite3.Connection) -> bool:
    """Roll back to and release the current write's savepoint; False if that is no longer possible."""
    try:
        conn.execute("ROLLBACK TO w")
        conn.execute("RELEASE w")
        return True
    except BaseException:
        return False


def _deliver(w: _Write, ok: bool, value: Any) -> None:
    """Hand a result to the waiting caller; a future nobody waits for any more (or already done) is left alone."""
    if w.future.done():
        return
    try:
        if ok:
            w.future.set_result(value)
        else:
            w.future.set_exception(value)
    except InvalidStateError:
        pass
