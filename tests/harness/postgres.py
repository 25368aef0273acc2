"""A real PostgreSQL server for the tests (Debian's ``postgresql`` package): ``initdb`` in a temporary directory as
the ``postgres`` user when the tests run as root, a socket and a loopback port of its own, durability off (a test
database lives seconds), always stopped. Each test gets its own database, cloned from a migrated template."""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import signal
import subprocess
import tempfile
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from .procs import HarnessError, ManagedProcess, free_port


def bindir() -> Path:
    """The newest installed PostgreSQL's bin directory."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/postgres"), key=lambda p: int(p.split("/")[4]))
    if found:
        return Path(found[-1]).parent
    binary = shutil.which("postgres")
    if binary is None:
        raise HarnessError("PostgreSQL is not installed (make test installs it through .ci/install-system.sh)")
    return Path(binary).parent


def _as_postgres() -> list[str]:
    """PostgreSQL refuses to run as root: under root, every command runs as the ``postgres`` user."""
    if os.geteuid() != 0:
        return []
    try:
        pwd.getpwnam("postgres")
    except KeyError:
        raise HarnessError("the tests run as root and there is no postgres user to run PostgreSQL as") from None
    return ["setpriv", "--reuid=postgres", "--regid=postgres", "--init-groups", "--"]


@dataclass
class PostgresServer:
    port: int
    workdir: Path
    process: ManagedProcess
    databases: list[str] = field(default_factory=list)

    def url(self, database: str = "postgres") -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{database}"

    def sql(self, statement: str, database: str = "postgres") -> None:
        import pg8000.native

        conn = pg8000.native.Connection("postgres", host="127.0.0.1", port=self.port, database=database)
        try:
            conn.run(statement)
        finally:
            conn.close()

    def create_database(self, template: str | None = None) -> str:
        """A new empty database (or a copy of ``template``); returns its URL."""
        name = f"t_{uuid.uuid4().hex[:16]}"
        self.sql(f"CREATE DATABASE {name}" + (f" TEMPLATE {template}" if template else ""))
        self.databases.append(name)
        return self.url(name)

    def drop_database(self, url: str) -> None:
        name = url.rsplit("/", 1)[1]
        self.sql(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")

    def restart(self) -> None:
        """Stop (PostgreSQL's fast shutdown, SIGINT: every connection is cut at once) and start again on the same
        port and data."""
        self.process._signal(signal.SIGINT)
        if self.process.wait_exit(30) is None:
            raise self.process.fail("did not stop within 30 s of SIGINT")
        self.process.stop()
        self.process = _run(self.workdir, self.port)

    def stop(self) -> int | None:
        rc = self.process.stop()
        shutil.rmtree(self.workdir, ignore_errors=True)
        return rc


def _answers(port: int) -> bool:
    import pg8000.native

    pg8000.native.Connection("postgres", host="127.0.0.1", port=port, database="postgres", timeout=2).close()
    return True


def _run(workdir: Path, port: int, ready_timeout: float = 30.0) -> ManagedProcess:
    argv = [
        *_as_postgres(),
        str(bindir() / "postgres"),
        "-D",
        str(workdir / "data"),
        "-p",
        str(port),
        "-k",
        str(workdir),
        "-c",
        "listen_addresses=127.0.0.1",
        "-c",
        "fsync=off",
        "-c",
        "synchronous_commit=off",
        "-c",
        "full_page_writes=off",
        "-c",
        "max_connections=400",
        "-c",
        "shared_buffers=64MB",
    ]
    proc = ManagedProcess("postgres", argv, workdir / "postgres.log")
    try:
        proc.wait_until(lambda: _answers(port), timeout=ready_timeout, what="accepting connections")
    except BaseException:
        proc.stop()
        raise
    return proc


def start_postgres(*, ready_timeout: float = 30.0) -> PostgresServer:
    """initdb (trust authentication on loopback only) and start; the directory is removed when it stops."""
    workdir = Path(tempfile.mkdtemp(prefix="voxarena-pg-"))
    if os.geteuid() == 0:
        entry = pwd.getpwnam("postgres")
        os.chown(workdir, entry.pw_uid, entry.pw_gid)
    init = [
        *_as_postgres(),
        str(bindir() / "initdb"),
        "-D",
        str(workdir / "data"),
        "-U",
        "postgres",
        "--auth=trust",
        "--encoding=UTF8",
        "--locale=C.UTF-8",
        "--no-sync",
    ]
    done = subprocess.run(init, capture_output=True, text=True, timeout=120)
    if done.returncode != 0:
        shutil.rmtree(workdir, ignore_errors=True)
        raise HarnessError(f"initdb failed (rc={done.returncode}):\n{done.stdout}\n{done.stderr}")
    port = free_port("127.0.0.1")
    return PostgresServer(port=port, workdir=workdir, process=_run(workdir, port, ready_timeout))
