"""Local accounts: the repository, `voxarena user create`, and POST /api/v1/auth/login (right, wrong, slowed)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import jwt
import pytest
from aiohttp.test_utils import TestClient, TestServer

from api.app import create_app
from api.auth import LOCAL_ISSUER
from api.passwords import hash_password
from api.services.accounts import LoginThrottle
from core.settings import Settings
from core.store import accounts
from core.store.db import Store, connect
from core.store.errors import ConflictError, NotFoundError
from core.store.migrations import migrate
from tests.conftest import assert_error

LOGIN = "/api/v1/auth/login"
PASSWORD = "correct horse battery staple"


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def db(tmp_path: Path):
    d = connect(tmp_path / "accounts.db")
    migrate(d)
    yield d
    d.conn.close()


def test_a_user_is_found_by_email_whatever_its_case(db):
    user = accounts.create_user(db, "Ann@Example.com", "hash", True)
    assert user["id"].startswith("usr_") and len(user["id"]) == 4 + 32
    assert user["is_admin"] is True
    found = accounts.get_by_email(db, "  ann@EXAMPLE.com ")
    assert found is not None and found["id"] == user["id"] and found["email"] == "Ann@Example.com"
    assert accounts.get_by_email(db, "bob@example.com") is None
    assert accounts.is_admin(db, user["id"]) is True
    assert accounts.is_admin(db, accounts.create_user(db, "bob@example.com", "h", False)["id"]) is False
    assert accounts.is_admin(db, "usr_nobody") is False


def test_a_second_account_with_the_same_email_is_a_conflict(db):
    accounts.create_user(db, "ann@example.com", "hash", False)
    with pytest.raises(ConflictError, match=r"(?i)ann@example\.com"):
        accounts.create_user(db, "ANN@example.com", "other", False)
    with pytest.raises(NotFoundError):
        accounts.get(db, "usr_nobody")
    with pytest.raises(NotFoundError):
        accounts.set_password_hash(db, "usr_nobody", "h")


def _user_create(data_dir: Path, email: str, stdin: str, *flags: str) -> subprocess.CompletedProcess[str]:
    exe = str(Path(sys.executable).with_name("voxarena"))
    return subprocess.run(
        [exe, "user", "create", email, "--data-dir", str(data_dir), *flags],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_user_create_reads_the_password_from_stdin_and_refuses_a_duplicate(tmp_path):
    data = tmp_path / "data"
    done = _user_create(data, "admin@example.com", PASSWORD + "\n", "--admin")
    assert done.returncode == 0, done.stderr
    user_id, email, flag = done.stdout.split()
    assert user_id.startswith("usr_") and email == "admin@example.com" and flag == "(admin)"
    assert PASSWORD not in done.stdout + done.stderr
    db = connect(data / "voxarena.db")
    row = accounts.get_by_email(db, "admin@example.com")
    db.conn.close()
    assert row is not None and row["is_admin"] and row["password_hash"].startswith("$argon2id$")
    assert PASSWORD not in row["password_hash"]

    again = _user_create(data, "ADMIN@example.com", PASSWORD + "\n")
    assert again.returncode == 1
    assert "already exists" in again.stderr and "Traceback" not in again.stderr

    short = _user_create(data, "b@example.com", "short\n")
    assert short.returncode == 2 and "at least 8 characters" in short.stderr


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
async def login_client(settings: Settings, store: Store, clock: FakeClock):
    await store.write(accounts.create_user, "ann@example.com", hash_password(PASSWORD), False)
    throttle = LoginThrottle(free_failures=3, first_pause_seconds=2.0, max_pause_seconds=60.0, clock=clock)
    app = create_app(settings.with_(rate_limit_auth_rps=1000.0), store=store, login_throttle=throttle)
    async with TestClient(TestServer(app, host="127.0.0.1")) as c:
        yield c


async def test_the_right_password_gets_a_bearer_token_that_opens_the_api(login_client, store):
    resp = await login_client.post(LOGIN, json={"email": "Ann@Example.com", "password": PASSWORD})
    assert resp.status == 200, await resp.text()
    body = await resp.json()
    assert body["token_type"] == "bearer" and body["expires_in"] == 3600
    user = await store.read(accounts.get_by_email, "ann@example.com")
    claims = jwt.decode(body["access_token"], options={"verify_signature": False})
    assert claims["sub"] == user["id"] and claims["iss"] == LOCAL_ISSUER
    # the same verification path as every other token
    listed = await login_client.get("/api/agents", headers={"Authorization": f"Bearer {body['access_token']}"})
    assert listed.status == 200
    tampered = body["access_token"][:-4] + ("AAAA" if not body["access_token"].endswith("AAAA") else "BBBB")
    await assert_error(
        await login_client.get("/api/agents", headers={"Authorization": f"Bearer {tampered}"}), 401, "unauthorized"
    )


async def test_unknown_email_and_wrong_password_get_the_same_401(login_client):
    wrong = await assert_error(
        await login_client.post(LOGIN, json={"email": "ann@example.com", "password": "not it"}), 401, "unauthorized"
    )
    unknown = await assert_error(
        await login_client.post(LOGIN, json={"email": "nobody@example.com", "password": PASSWORD}), 401, "unauthorized"
    )
    assert wrong == unknown
    await assert_error(await login_client.post(LOGIN, json={"email": "ann@example.com"}), 422, "validation_error")


async def test_repeated_failures_slow_the_account_then_a_pause_lets_the_owner_in(login_client, clock):
    for _ in range(3):
        await assert_error(await login_client.post(LOGIN, json={"email": "ann@example.com", "password": "guess"}), 401)
    # slowed: refused before the password is even checked, the right one included
    refused = await login_client.post(LOGIN, json={"email": "ann@example.com", "password": PASSWORD})
    await assert_error(refused, 429, "rate_limited")
    assert refused.headers["Retry-After"] == "2"
    clock.now += 2.0
    await assert_error(await login_client.post(LOGIN, json={"email": "ann@example.com", "password": "guess"}), 401)
    refused = await login_client.post(LOGIN, json={"email": "ann@example.com", "password": PASSWORD})
    await assert_error(refused, 429, "rate_limited")
    assert refused.headers["Retry-After"] == "4"  # the pause doubles with each further failure
    clock.now += 4.0
    ok = await login_client.post(LOGIN, json={"email": "ann@example.com", "password": PASSWORD})
    assert ok.status == 200, await ok.text()


async def test_failures_are_slowed_per_address_across_accounts(login_client, clock):
    for email in ("a@example.com", "b@example.com", "c@example.com"):
        await assert_error(await login_client.post(LOGIN, json={"email": email, "password": "guess"}), 401)
    # a fourth account, never tried: the address itself is slowed
    await assert_error(
        await login_client.post(LOGIN, json={"email": "ann@example.com", "password": PASSWORD}), 429, "rate_limited"
    )


def test_the_throttle_counts_concurrent_attempts_and_forgets_old_failures():
    clock = FakeClock()
    throttle = LoginThrottle(free_failures=2, first_pause_seconds=1.0, forget_after_seconds=100.0, clock=clock)
    keys = ["account:a", "address:x"]
    throttle.begin(keys)
    throttle.begin(keys)  # two attempts in flight, neither judged yet
    assert throttle.retry_after(keys) == pytest.approx(1.0)
    throttle.succeeded(account_key="account:a", address_key="address:x")
    assert throttle.retry_after(["account:a"]) == 0
    assert throttle.retry_after(["address:x"]) == 0  # one failure left on the address: under the free ones
    throttle.begin(keys)
    throttle.begin(keys)
    clock.now += 100.0
    assert throttle.retry_after(keys) == 0


async def test_with_clerk_configured_the_login_route_says_it_is_off(tmp_path):
    settings = Settings(
        data_dir=tmp_path / "d", clerk_issuer="https://clerk.test.local", clerk_jwks_url="http://127.0.0.1:9/jwks.json"
    )
    store = Store(settings.database_path)
    try:
        async with TestClient(TestServer(create_app(settings, store=store), host="127.0.0.1")) as c:
            body = await assert_error(
                await c.post(LOGIN, json={"email": "a@example.com", "password": "x"}), 404, "not_found"
            )
            assert "Clerk" in body["detail"]
    finally:
        store.close()


async def test_two_api_nodes_on_one_redis_count_login_failures_once(settings: Settings, store: Store, tmp_path):
    """Five free failures for the cluster, not five per node: the sixth wrong password, on either node, is paused."""
    from tests.harness.redis_server import start_redis

    redis = start_redis(tmp_path / "redis")
    await store.write(accounts.create_user, "bob@example.com", hash_password(PASSWORD), False)
    clients = []
    try:
        for _ in range(2):
            app = create_app(settings.with_(rate_limit_auth_rps=1000.0, redis_url=redis.url), store=store)
            client = TestClient(TestServer(app, host="127.0.0.1"))
            await client.start_server()
            clients.append(client)
        wrong = {"email": "bob@example.com", "password": "wrong password!"}
        statuses = [(await clients[i % 2].post(LOGIN, json=wrong)).status for i in range(5)]
        assert statuses == [401] * 5
        paused = await clients[1].post(LOGIN, json={**wrong, "password": PASSWORD})  # even the right one, for now
        assert paused.status == 429 and int(paused.headers["Retry-After"]) >= 1, await paused.text()
    finally:
        for client in clients:
            await client.close()
        redis.stop()
