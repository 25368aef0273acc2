"""The data dir and the database files are private (0700, 0600), also when they were made looser before; storage
that cannot be written is refused at start with one line that names the file, not found out mid-run."""

from __future__ import annotations

import logging
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from core.store.db import Store
from core.store.errors import StorageUnavailable
from tests.storage_conditions import unwritable  # noqa: F401  (fixtures, found by pytest by name)
from worker.usage_spill import spill, spill_path

ROOT = Path(__file__).resolve().parents[1]


def _mode(path: Path) -> int:
    return path.stat().st_mode & 0o777


def test_a_new_data_dir_and_its_database_files_are_private(tmp_path):
    data = tmp_path / "data"
    store = Store(data / "voxarena.db")
    try:
        store.write_sync(lambda db: db.execute("CREATE TABLE t (x)"))
        assert _mode(data) == 0o700
        files = {p.name: _mode(p) for p in data.iterdir()}
        assert {"voxarena.db", "voxarena.db-wal", "voxarena.db-shm"} <= set(files)
        assert set(files.values()) == {0o600}, files
    finally:
        store.close()


def test_a_loose_data_dir_and_database_are_tightened_at_start_and_said_so(tmp_path, caplog):
    data = tmp_path / "data"
    data.mkdir(mode=0o755)
    data.chmod(0o755)
    conn = sqlite3.connect(data / "voxarena.db")
    conn.execute("CREATE TABLE t (x)")
    conn.close()
    (data / "voxarena.db").chmod(0o644)
    with caplog.at_level(logging.WARNING, logger="voxarena.store"):
        Store(data / "voxarena.db").close()
    assert _mode(data) == 0o700 and _mode(data / "voxarena.db") == 0o600
    said = [r.getMessage() for r in caplog.records]
    assert any("mode 755" in m and "tightened to 700" in m for m in said), said
    assert any("voxarena.db was mode 644" in m and "tightened to 600" in m for m in said), said


def test_a_shared_sticky_directory_is_left_alone(tmp_path):
    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(0o1777)
    Store(shared / "voxarena.db").close()
    assert shared.stat().st_mode & 0o7777 == 0o1777
    assert _mode(shared / "voxarena.db") == 0o600


def test_spilled_usage_is_private(tmp_path):
    path = spill_path(tmp_path / "data", "job-1")
    spill(path, [{"idempotency_key": "k", "quantity": 1}])
    assert _mode(path.parent) == 0o700 and _mode(path) == 0o600


def test_a_read_only_database_is_refused_at_start_with_the_file_named(tmp_path, unwritable):
    path = tmp_path / "voxarena.db"
    Store(path).close()
    unwritable(path)
    with pytest.raises(StorageUnavailable, match=rf"{path} is not writable"):
        Store(path)


def test_a_shm_file_that_cannot_be_written_is_refused_at_start(tmp_path, unwritable):
    """SQLite maps the -shm file into memory: one it cannot write is refused before it can fault mid-run."""
    path = tmp_path / "voxarena.db"
    Store(path).close()
    shm = Path(f"{path}-shm")
    shm.write_bytes(b"")  # what a crash leaves behind
    shm.chmod(0o600)
    unwritable(shm)
    with pytest.raises(StorageUnavailable, match=r"voxarena.db-shm is not writable"):
        Store(path)


def test_a_data_dir_that_cannot_be_written_is_refused_at_start(tmp_path, unwritable):
    data = tmp_path / "data"
    Store(data / "voxarena.db").close()
    unwritable(data)
    with pytest.raises(StorageUnavailable, match=rf"the data dir {data} is not writable"):
        Store(data / "voxarena.db")


def test_serve_on_a_read_only_database_exits_with_one_line(tmp_path, unwritable):
    data = tmp_path / "data"
    Store(data / "voxarena.db").close()
    unwritable(data / "voxarena.db")
    env = {k: v for k, v in os.environ.items() if not k.startswith("VOXARENA_")}
    env["PYTHONPATH"] = str(ROOT)
    done = subprocess.run(
        [sys.executable, "-m", "worker", "serve", "--no-worker", "--port", "0", "--data-dir", str(data)],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        timeout=120,
    )
    assert done.returncode == 2, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith("voxarena: ") and "voxarena.db is not writable" in lines[0], done.stderr
