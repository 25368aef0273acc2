"""Fixtures shared by the API tests: real SQLite files, the real aiohttp app on a real loopback socket."""

from __future__ import annotations

import contextlib
import os
import sqlite3
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import ClientResponse
from aiohttp.test_utils import TestClient, TestServer

from api.app import create_app
from api.keys import ISSUER
from core.dispatch_meta import DispatchMeta, DispatchSigner
from core.secrets import SecretBox
from core.settings import Settings
from core.store.db import Store
from tests.harness.dns import DnsServer
from tests.harness.postgres import PostgresServer, start_postgres
from worker.connections import json_protocol_errors

# The second pass of `make test` runs the store-touching tests on PostgreSQL.
ON_POSTGRES = os.environ.get("VOXARENA_TEST_BACKEND", "sqlite") == "postgresql"
sqlite_only = pytest.mark.skipif(ON_POSTGRES, reason="reads the SQLite file itself")
postgres_only = pytest.mark.skipif(not ON_POSTGRES, reason="several nodes share a store on PostgreSQL only")

LIVEKIT_KEY = "testkey"
LIVEKIT_SECRET = "test-secret-that-is-long-enough-000000"


@pytest.fixture
def livekit_rooms() -> dict[str, list[int]]:
    """Who the LiveKit stub lists in each room (participant kinds); tests put callers and agents in it."""
    return {}


@pytest.fixture
async def twirp_stub(livekit_rooms):
    from tests.api.twirp_stub import start_twirp_stub

    server, calls = await start_twirp_stub(livekit_rooms)
    yield server, calls
    await server.close()


@pytest.fixture(scope="session")
def postgres() -> Iterator[PostgresServer | None]:
    """The PostgreSQL server of this test process when the suite runs on PostgreSQL
    (``VOXARENA_TEST_BACKEND=postgresql``, the second pass of ``make test``), with a migrated template database."""
    if not ON_POSTGRES:
        yield None
        return
    server = start_postgres()
    try:
        url = server.create_database()
        Store(url).close()  # the schema, once; each test's database is a copy
        server.sql(f"ALTER DATABASE {url.rsplit('/', 1)[1]} RENAME TO voxarena_template")
        yield server
    finally:
        server.stop()


@pytest.fixture
def database_url(postgres: PostgresServer | None) -> Iterator[str]:
    """A fresh database of its own for the test on PostgreSQL; "" (SQLite in the data dir) otherwise."""
    if postgres is None:
        yield ""
        return
    url = postgres.create_database("voxarena_template")
    yield url
    with contextlib.suppress(Exception):
        postgres.drop_database(url)


@pytest.fixture
def settings(tmp_path: Path, twirp_stub, database_url: str) -> Settings:
    server, _ = twirp_stub
    return Settings(
        database_url=database_url,
        data_dir=tmp_path / "data",
        host="127.0.0.1",
        port=0,
        worker_enabled=False,
        livekit_url=str(server.make_url("")).rstrip("/").replace("http://", "ws://"),
        livekit_api_key=LIVEKIT_KEY,
        livekit_api_secret=LIVEKIT_SECRET,
        rate_limit_rps=1_000_000.0,
    )  # the API tests hammer one token; tests/api/test_ratelimit.py limits


@pytest.fixture
def store(settings: Settings) -> Store:
    s = Store(settings.database_target)
    yield s
    s.close()


@pytest.fixture
async def dns_server() -> AsyncIterator[DnsServer]:
    """The only DNS the API under test asks (tests/harness/dns.py): names resolve as the test says."""
    server = await DnsServer().start()
    yield server
    server.close()


@pytest.fixture
async def client(settings: Settings, store: Store, dns_server: DnsServer) -> AsyncIterator[TestClient]:
    app = create_app(settings, store=store, net_lookup=dns_server.lookup)
    async with TestClient(TestServer(app, host="127.0.0.1")) as c:
        json_protocol_errors(c.server.runner.server)  # as the product's own listener does (worker.connections)
        yield c


@pytest.fixture
def token_for(client: TestClient) -> Callable[[str], str]:
    issuer = client.app[ISSUER]

    def make(user: str, **kw: Any) -> str:
        return issuer.issue(user, **kw)

    return make


@pytest.fixture
def auth(token_for: Callable[[str], str]) -> Callable[[str], dict[str, str]]:
    return lambda user: {"Authorization": f"Bearer {token_for(user)}"}


async def assert_error(resp: ClientResponse, status: int, type_: str | None = None) -> dict[str, Any]:
    """The one error body every 4xx/5xx carries."""
    assert resp.status == status, await resp.text()
    assert resp.content_type == "application/json"
    body = await resp.json()
    assert isinstance(body["detail"], str) and body["detail"]
    assert body["status_code"] == status
    assert isinstance(body["type"], str) and body["type"]
    if type_ is not None:
        assert body["type"] == type_, body
    return body


def product_dispatch(settings: Settings, raw: str) -> dict[str, Any]:
    """The fields of metadata the product dispatched a job with, verified as its LiveKit server's worker does."""
    signer = DispatchSigner.from_secret_box(SecretBox.from_settings(settings.secret_key, settings.data_dir))
    return DispatchMeta.parse(raw, signer, server_key=settings.livekit_api_key).fields()


CLUSTER_TABLES = ("nodes", "leases")


def table_snapshot(settings: Settings) -> dict[str, list[tuple]]:
    """Every row of every table of the test's database (SQLite file or PostgreSQL), to prove a refused request
    wrote nothing."""
    if settings.database_url:
        from core.store.pg import PgDatabase

        db = PgDatabase(settings.database_url, read_only=True)
        try:
            names = [
                r[0]
                for r in db.execute(
                    "SELECT table_name FROM information_schema.tables WHERE table_schema = 'public' ORDER BY 1"
                )
            ]
            out = {n: sorted(db.execute(f"SELECT * FROM {n}").rows, key=repr) for n in names}
        finally:
            db.close()
    else:
        conn = sqlite3.connect(settings.database_path)
        try:
            names = [r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table' ORDER BY name")]
            out = {n: sorted(conn.execute(f"SELECT * FROM {n}").fetchall(), key=repr) for n in names}
        finally:
            conn.close()
    assert "agents" in out, f"no schema in {settings.database_target}"  # never an empty file compared with itself
    # the node's own heartbeat and the sweepers' leases change on their own, whatever a request does
    return {n: rows for n, rows in out.items() if n not in CLUSTER_TABLES}


def db_rows(settings: Settings, sql: str, params: list[Any] | None = None) -> list[dict[str, Any]]:
    """Rows of a query (``?`` placeholders) on the test's database, whichever engine holds it."""
    if settings.database_url:
        from core.store.pg import PgDatabase

        db = PgDatabase(settings.database_url, read_only=True)
        try:
            return list(db.query(sql, params or []))
        finally:
            db.close()
    conn = sqlite3.connect(settings.database_path)
    try:
        conn.row_factory = sqlite3.Row
        return [dict(r) for r in conn.execute(sql, params or [])]
    finally:
        conn.close()
