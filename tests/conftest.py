"""Fixtures shared by the API tests: real SQLite files, the real aiohttp app on a real loopback socket."""

from __future__ import annotations

import sqlite3
from collections.abc import AsyncIterator, Callable
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
from worker.connections import json_protocol_errors

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


@pytest.fixture
def settings(tmp_path: Path, twirp_stub) -> Settings:
    server, _ = twirp_stub
    return Settings(
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
    s = Store(settings.database_path)
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


def table_snapshot(db_path: Path) -> dict[str, list[tuple]]:
    """Every row of every table, to prove a refused request wrote nothing."""
    conn = sqlite3.connect(db_path)
    try:
        names = [r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table' ORDER BY name")]
        return {n: sorted(conn.execute(f"SELECT * FROM {n}").fetchall(), key=repr) for n in names}
    finally:
        conn.close()
