"""Migrations apply in ascending version order, a list out of order is refused, a database made by an older order
gets exactly the steps it lacks, and the callback signing secrets are sealed at rest (migration 16 seals old rows)."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
from cryptography.fernet import Fernet

from core.secrets import SecretBox
from core.store import calls as calls_repo
from core.store import migrations, schema
from core.store.db import Store, connect
from core.store.migrations import MIGRATIONS, migrate
from tests.conftest import db_rows

STEP = {version: (version, name, step) for version, name, step in MIGRATIONS}
# The order earlier releases listed (and so applied) the steps in.
OLD_ORDER = [*range(1, 11), 13, 11, 14, 12, 15]
PLAIN = "whsec_" + "p" * 43


def _schema(path: Path) -> dict[str, object]:
    """Tables with their columns (a set: ALTER TABLE order may differ) and every index and trigger's SQL."""
    conn = sqlite3.connect(path)
    try:
        tables = [r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
        shape: dict[str, object] = {
            t: sorted((c[1], c[2], c[3], c[4]) for c in conn.execute(f"PRAGMA table_info({t})")) for t in tables
        }
        shape["indexes"] = sorted(
            conn.execute("SELECT name, tbl_name, sql FROM sqlite_master WHERE type IN ('index', 'trigger')").fetchall(),
            key=repr,
        )
        return shape
    finally:
        conn.close()


def _applied(path: Path) -> list[int]:
    conn = sqlite3.connect(path)
    try:
        return [r[0] for r in conn.execute("SELECT version FROM _migrations ORDER BY applied_at, rowid")]
    finally:
        conn.close()


def _old_database(path: Path, versions: list[int]) -> None:
    """A database migrated step by step in the given order (each call's list is ascending on its own)."""
    db = connect(path)
    try:
        for version in versions:
            migrate(db, migrations=[STEP[version]])
        db.execute("INSERT INTO user_secrets (owner_id, callback_secret, created_at) VALUES ('t_1', ?, 'now')", [PLAIN])
    finally:
        db.conn.close()


def test_the_migration_list_is_in_strictly_ascending_version_order():
    versions = [m[0] for m in MIGRATIONS]
    assert versions == sorted(set(versions)), versions


def test_a_list_out_of_version_order_is_refused_before_anything_is_applied(tmp_path):
    db = connect(tmp_path / "x.db")
    try:
        with pytest.raises(ValueError, match="not in strictly ascending version order: 11 comes after 13"):
            migrate(db, migrations=[STEP[1], STEP[13], STEP[11]])
        assert db.execute("SELECT name FROM sqlite_master").fetchall() == []
        with pytest.raises(ValueError, match="2 comes after 2"):
            migrate(db, migrations=[STEP[1], STEP[2], STEP[2]])
    finally:
        db.conn.close()


def test_a_fresh_database_applies_every_step_in_ascending_order(tmp_path):
    Store(tmp_path / "fresh.db").close()
    assert _applied(tmp_path / "fresh.db") == sorted(STEP)


@pytest.mark.parametrize("made_with", [OLD_ORDER, [*range(1, 11), 13]], ids=["old order, complete", "up to 13"])
def test_a_database_made_in_the_old_order_gets_exactly_the_steps_it_lacks(tmp_path, made_with):
    old, fresh = tmp_path / "old.db", tmp_path / "fresh.db"
    _old_database(old, made_with)
    box = SecretBox(Fernet.generate_key())

    db = connect(old)
    try:
        applied = migrate(db, secrets=box)
    finally:
        db.conn.close()

    assert applied == sorted(set(STEP) - set(made_with))
    assert _applied(old) == [*made_with, *applied]  # nothing applied twice
    Store(fresh).close()
    assert _schema(old) == _schema(fresh)


def test_migration_16_seals_the_stored_callback_secrets_and_they_still_sign(tmp_path):
    path = tmp_path / "old.db"
    _old_database(path, OLD_ORDER)
    box = SecretBox(Fernet.generate_key())

    store = Store(path, secrets=box)
    try:
        stored = store.read_sync(lambda db: db.execute("SELECT callback_secret FROM user_secrets").fetchone()[0])
        assert PLAIN not in stored and box.open(stored) == PLAIN
        assert store.write_sync(calls_repo.callback_secret, box, "t_1") == PLAIN
    finally:
        store.close()


def test_migration_16_without_the_key_refuses_and_leaves_the_secrets_as_they_were(tmp_path):
    path = tmp_path / "old.db"
    _old_database(path, OLD_ORDER)
    with pytest.raises(migrations.MigrationNeedsKey, match="needs the secret key"):
        Store(path)
    assert 16 not in _applied(path)
    conn = sqlite3.connect(path)
    assert conn.execute("SELECT callback_secret FROM user_secrets").fetchone()[0] == PLAIN
    conn.close()


async def test_the_callback_signing_secret_is_stored_sealed(client, auth, settings):
    from api.keys import SECRETS

    shown = (await (await client.get("/api/calls/callback-secret", headers=auth("alice"))).json())["secret"]
    rotated = (await (await client.post("/api/calls/callback-secret", headers=auth("alice"))).json())["secret"]
    assert shown.startswith("whsec_") and rotated.startswith("whsec_") and rotated != shown
    (row,) = db_rows(settings, "SELECT callback_secret FROM user_secrets")
    stored = row["callback_secret"]
    assert rotated not in stored
    assert client.app[SECRETS].open(stored) == rotated
    again = await client.get("/api/calls/callback-secret", headers=auth("alice"))
    assert (await again.json())["secret"] == rotated


def test_the_schema_snapshot_is_what_the_migrations_make(tmp_path):
    # core/store/schema.sql is the readable current schema; regenerate: .venv/bin/python -m core.store.schema
    assert schema.SNAPSHOT.read_text() == schema.fresh(), "core/store/schema.sql is stale: python -m core.store.schema"
    migrated = tmp_path / "migrated.db"
    db = connect(migrated)
    migrate(db)
    db.conn.close()
    # and it is the same schema, not only the same text: a database made from the file has the same shape
    from_file = tmp_path / "from_file.db"
    conn = sqlite3.connect(from_file)
    conn.executescript(schema.SNAPSHOT.read_text())
    conn.close()
    assert _schema(from_file) == _schema(migrated)
