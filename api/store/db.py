"""SQLite through sqlite-utils: connections, pragmas, and the async boundary.

Reads run on a small pool of reader threads, each with its own connection. Every write goes through one writer
thread that groups whatever writes are queued into one transaction (each write in its own SAVEPOINT, so one failing
write rolls back alone) and commits once: the group commit keeps metering ingest fast without ever letting two
writers race for SQLite's lock inside this process. Job processes open their own ``Store`` on the same file; WAL
and ``busy_timeout`` arbitrate between processes.
"""

from __future__ import annotations

import asyncio
import logging
import queue
import sqlite3
import threading
from concurrent.futures import Future, InvalidStateError, ThreadPoolExecutor
from pathlib import Path
from typing import Any, Callable, TypeVar

import sqlite_utils

from .migrations import migrate

log = logging.getLogger("voxarena.store")

T = TypeVar("T")

BUSY_TIMEOUT_MS = 10_000
MAX_GROUP = 512


def connect(path: Path | str) -> sqlite_utils.Database:
    conn = sqlite3.connect(str(path), isolation_level=None, check_same_thread=False, timeout=BUSY_TIMEOUT_MS / 1000)
    conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute("PRAGMA synchronous = NORMAL")
    conn.execute("PRAGMA foreign_keys = ON")
    conn.execute("PRAGMA temp_store = MEMORY")
    return sqlite_utils.Database(conn)


class _Write:
    __slots__ = ("fn", "args", "future")

    def __init__(self, fn: Callable[..., Any], args: tuple[Any, ...], future: Future[Any]) -> None:
        self.fn, self.args, self.future = fn, args, future


class Store:
    """The database file plus its writer thread and reader pool."""

    def __init__(self, path: Path | str, *, readers: int = 4) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        db = connect(self.path)
        migrate(db)
        db.conn.close()
        self._queue: queue.SimpleQueue[_Write | None] = queue.SimpleQueue()
        self._writer = threading.Thread(target=self._write_loop, name="voxarena-sqlite-writer", daemon=True)
        self._local = threading.local()
        self._readers = ThreadPoolExecutor(max_workers=readers, thread_name_prefix="voxarena-sqlite-reader")
        self._reader_dbs: list[sqlite_utils.Database] = []
        self._lock = threading.Lock()
        self._closed = False
        self._writer.start()

    # ---- async API ----
    async def read(self, fn: Callable[..., T], *args: Any) -> T:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._readers, self._run_read, fn, args)

    async def write(self, fn: Callable[..., T], *args: Any) -> T:
        return await asyncio.wrap_future(self.submit(fn, *args))

    # ---- thread-safe API (usable from job threads and other loops) ----
    def submit(self, fn: Callable[..., T], *args: Any) -> "Future[T]":
        if self._closed:
            raise RuntimeError("store is closed")
        fut: Future[T] = Future()
        self._queue.put(_Write(fn, args, fut))
        return fut

    def write_sync(self, fn: Callable[..., T], *args: Any) -> T:
        return self.submit(fn, *args).result()

    def read_sync(self, fn: Callable[..., T], *args: Any) -> T:
        return self._run_read(fn, args)

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
    def _reader_db(self) -> sqlite_utils.Database:
        db = getattr(self._local, "db", None)
        if db is None:
            db = connect(self.path)
            db.conn.execute("PRAGMA query_only = ON")
            self._local.db = db
            with self._lock:
                self._reader_dbs.append(db)
        return db

    def _run_read(self, fn: Callable[..., T], args: tuple[Any, ...]) -> T:
        return fn(self._reader_db(), *args)

    def _write_loop(self) -> None:
        db = connect(self.path)
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
                try:
                    self._run_group(db, batch)
                except BaseException:  # noqa: BLE001 - a bug here must not stop every later write
                    log.exception("store writer: group of %d writes failed unexpectedly", len(batch))
                    for w in batch:
                        _deliver(w, False, RuntimeError("store writer failed; see the log"))
                if stop:
                    return
        finally:
            db.conn.close()

    def _run_group(self, db: sqlite_utils.Database, batch: list[_Write]) -> None:
        """One transaction for the batch, each write in its own SAVEPOINT. Nothing here may kill the thread: a
        cancelled write is skipped, a failing write (or a failing SAVEPOINT around it) fails that write alone, and
        a failed BEGIN or COMMIT fails the writes of that group only."""
        # A caller that gave up (its task was cancelled) cancelled the future: skip it, never run it half-seen.
        live = [w for w in batch if w.future.set_running_or_notify_cancel()]
        if not live:
            return
        conn = db.conn
        try:
            conn.execute("BEGIN IMMEDIATE")
        except BaseException as e:  # noqa: BLE001 - the thread must survive anything a write can raise
            for w in live:
                _deliver(w, False, e)
            return
        results: list[tuple[_Write, bool, Any]] = []
        for w in live:
            try:
                conn.execute("SAVEPOINT w")
            except BaseException as e:  # noqa: BLE001
                results.append((w, False, e))
                continue
            try:
                value = w.fn(db, *w.args)
            except BaseException as e:  # noqa: BLE001 - the write's own failure: undo it alone
                results.append((w, False, e))
                if not _undo_savepoint(conn):
                    # The savepoint itself is gone (the write ended the transaction): the group cannot commit.
                    self._fail_group(conn, results, live, e)
                    return
            else:
                try:
                    conn.execute("RELEASE w")
                except BaseException as e:  # noqa: BLE001
                    results.append((w, False, e))
                    if not _undo_savepoint(conn):
                        self._fail_group(conn, results, live, e)
                        return
                else:
                    results.append((w, True, value))
        try:
            conn.execute("COMMIT")
        except BaseException as e:  # noqa: BLE001
            log.error("commit failed for %d writes: %s", len(live), e)
            self._fail_group(conn, [], live, e)
            return
        for w, ok, value in results:
            _deliver(w, ok, value)

    @staticmethod
    def _fail_group(conn: sqlite3.Connection, results: list[tuple[_Write, bool, Any]], live: list[_Write],
                    error: BaseException) -> None:
        """Roll the whole group back; each write fails with its own error if it had one, else with ``error``."""
        try:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
        except BaseException:  # noqa: BLE001
            log.exception("rollback failed")
        own = {id(w): value for w, ok, value in results if not ok}
        for w in live:
            _deliver(w, False, own.get(id(w), error))


def _undo_savepoint(conn: sqlite3.Connection) -> bool:
    """Roll back to and release the current write's savepoint; False if that is no longer possible."""
    try:
        conn.execute("ROLLBACK TO w")
        conn.execute("RELEASE w")
        return True
    except BaseException:  # noqa: BLE001
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
