"""Rate limits: headers on every /api response, 429 after the burst, the login route by address, the per-tenant hook,
and buckets shared through a real Redis by two real API processes."""

from __future__ import annotations

import asyncio
import hashlib
import logging
import os
import secrets
import socket
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer, make_mocked_request

from api import ratelimit
from api.app import create_app
from api.auth import LocalIssuer
from api.keys import SETTINGS
from api.ratelimit import RATE_OVERRIDE, MemoryBuckets, RateLimiter, burst_for
from core.settings import Settings
from core.store.db import Store
from tests.conftest import assert_error
from tests.harness.procs import ManagedProcess, free_port
from tests.harness.redis_server import start_redis

HEADERS = ("X-RateLimit-Limit", "X-RateLimit-Remaining", "X-RateLimit-Reset")


class FakeClock:
    def __init__(self, now: float = 1_700_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def limited(settings: Settings, **kw) -> Settings:
    return settings.with_(**{"rate_limit_rps": 0.01, "rate_limit_burst": 5, "rate_limit_auth_rps": 0.01, **kw})


@pytest.fixture
async def tight(settings: Settings, store: Store):
    """The API with buckets of 5 that barely refill (one token per 100 s)."""
    async with TestClient(TestServer(create_app(limited(settings), store=store), host="127.0.0.1")) as c:
        yield c


def assert_limit_headers(resp, *, limit: int, remaining: int | None = None) -> None:
    for name in HEADERS:
        assert name in resp.headers, (resp.status, dict(resp.headers))
    assert int(resp.headers["X-RateLimit-Limit"]) == limit
    if remaining is not None:
        assert int(resp.headers["X-RateLimit-Remaining"]) == remaining
    assert int(resp.headers["X-RateLimit-Reset"]) >= int(time.time())


async def test_every_api_response_carries_the_headers_whatever_its_status(tight, auth):
    h = auth("alice")
    ok = await tight.get("/api/agents", headers=h)
    assert ok.status == 200
    assert_limit_headers(ok, limit=5, remaining=4)
    assert_limit_headers(await tight.post("/api/agents", json={"name": 5}, headers=h), limit=5, remaining=3)
    assert_limit_headers(await tight.get("/api/agents/nope", headers=h), limit=5, remaining=2)
    assert_limit_headers(await tight.get("/api/no-such-route", headers=h), limit=5, remaining=1)
    # no credential: limited by address, 401 and still the headers
    unauth = await tight.get("/api/agents")
    await assert_error(unauth, 401, "unauthorized")
    assert_limit_headers(unauth, limit=5, remaining=4)
    # outside /api and /tenants: not limited
    for path in ("/health", "/healthz", "/openapi.json"):
        resp = await tight.get(path)
        assert resp.status == 200 and "X-RateLimit-Limit" not in resp.headers


async def test_after_the_burst_a_429_with_retry_after_and_the_error_body(tight, auth):
    h = auth("alice")
    for i in range(5):
        resp = await tight.get("/api/agents", headers=h)
        assert resp.status == 200
        assert int(resp.headers["X-RateLimit-Remaining"]) == 4 - i
    refused = await tight.get("/api/agents", headers=h)
    body = await assert_error(refused, 429, "rate_limited")
    assert "rate limit" in body["detail"]
    assert_limit_headers(refused, limit=5, remaining=0)
    retry = int(refused.headers["Retry-After"])
    assert 1 <= retry <= 100
    # another user has their own bucket
    assert (await tight.get("/api/agents", headers=auth("bob"))).status == 200


async def test_a_users_tokens_share_one_bucket_and_forged_ones_count_against_their_address(tight, token_for):
    first = {"Authorization": f"Bearer {token_for('alice', ttl_seconds=600)}"}
    second = {"Authorization": f"Bearer {token_for('alice', ttl_seconds=900)}"}  # a rotated token, same user
    assert first != second
    remaining = []
    for h in (first, second, first, second):
        resp = await tight.get("/api/agents", headers=h)
        assert resp.status == 200
        remaining.append(int(resp.headers["X-RateLimit-Remaining"]))
    assert remaining == [4, 3, 2, 1]
    # a token that does not verify (another issuer's key) spends the address's bucket, never alice's
    forged = {"Authorization": f"Bearer {LocalIssuer(Path(tight.app[SETTINGS].data_dir) / 'other').issue('alice')}"}
    for expect in (4, 3):
        resp = await tight.get("/api/agents", headers=forged)
        await assert_error(resp, 401)
        assert int(resp.headers["X-RateLimit-Remaining"]) == expect
    assert int((await tight.get("/api/agents", headers=first)).headers["X-RateLimit-Remaining"]) == 0


async def _new_key(client, auth, user: str) -> dict:
    resp = await client.post("/api/keys", json={"name": "ci"}, headers=auth(user))  # on the user's own bucket
    assert resp.status == 201, await resp.text()
    return await resp.json()


async def test_refused_api_keys_count_against_their_address_however_they_are_sent(tight, auth):
    """Random key-shaped values, each new, through every header a key travels in: the address's bucket empties, as
    with forged JWTs, while a live key keeps its own bucket."""
    live = (await _new_key(tight, auth, "alice"))["key"]
    statuses = []
    for i in range(12):
        junk = "vxa_" + secrets.token_urlsafe(32)
        header = ({"Authorization": f"Bearer {junk}"}, {"X-API-Key": junk}, {"x-webhook-token": junk})[i % 3]
        statuses.append((await tight.get("/api/agents", headers=header)).status)
    assert statuses == [401] * 5 + [429] * 7
    await assert_error(await tight.get("/api/agents"), 429)  # no credential: the same address bucket
    for expect in (4, 3):
        resp = await tight.get("/api/agents", headers={"X-API-Key": live})
        assert resp.status == 200 and int(resp.headers["X-RateLimit-Remaining"]) == expect


async def test_a_key_refused_after_it_was_accepted_is_charged_to_its_address_too(tight, auth):
    key = await _new_key(tight, auth, "alice")
    h = {"X-API-Key": key["key"]}
    assert (await tight.get("/api/agents", headers=h)).status == 200
    assert (await tight.delete(f"/api/keys/{key['id']}", headers=auth("alice"))).status == 200
    for _ in range(4):  # on the key's own bucket (trusted for a while), each 401 spends an address token as well
        await assert_error(await tight.get("/api/agents", headers=h), 401)
    await assert_error(await tight.get("/api/agents"), 401)  # the address's last token
    await assert_error(await tight.get("/api/agents"), 429)


async def test_a_tenants_own_rate_applies_to_its_api_keys(settings, store, auth):
    app = create_app(settings.with_(rate_limit_rps=1.0, rate_limit_burst=0, admin_users=("root",)), store=store)
    async with TestClient(TestServer(app, host="127.0.0.1")) as c:
        team = await (
            await c.post(
                "/tenants", json={"name": "t", "owner_user_id": "alice", "rate_limit_rps": 50}, headers=auth("root")
            )
        ).json()
        made = await c.post("/api/keys", json={"name": "k"}, headers={**auth("alice"), "X-Tenant-ID": team["id"]})
        key = {"X-API-Key": (await made.json())["key"]}
        first = await c.get("/api/agents", headers=key)  # resolves the key's tenant
        assert first.status == 200 and first.headers["X-RateLimit-Limit"] == "2"  # the default: twice 1/s
        later = await c.get("/api/agents", headers=key)
        assert later.status == 200 and later.headers["X-RateLimit-Limit"] == "100"  # twice the tenant's 50/s


async def test_the_login_route_is_limited_by_address_at_the_auth_rate(settings, store, auth):
    app = create_app(
        limited(settings, rate_limit_rps=1000.0, rate_limit_burst=0, rate_limit_auth_rps=0.01), store=store
    )
    async with TestClient(TestServer(app, host="127.0.0.1")) as c:
        statuses = []
        for i in range(2):
            # a different credential on each try changes nothing: the login bucket is the address's
            resp = await c.post(
                "/api/v1/auth/login",
                json={"email": f"u{i}@example.com", "password": "x"},
                headers={"X-API-Key": f"k{i}"},
            )
            statuses.append(resp.status)
            assert resp.headers["X-RateLimit-Limit"] == "1"  # burst 0: twice the auth rate, at least one
        assert statuses == [401, 429]
        # the rest of the API is limited at the general rate, on its own bucket
        assert (await c.get("/api/agents", headers=auth("alice"))).headers["X-RateLimit-Limit"] == "2000"


async def test_a_rate_override_hook_sets_the_rate_of_a_credential(settings, store):
    issuer = LocalIssuer(settings.data_dir)
    vip, plain = issuer.issue("vip"), issuer.issue("plain")
    seen = []

    async def override(credential_hash: str) -> float | None:
        seen.append(credential_hash)
        return 50.0 if credential_hash == hashlib.sha256(vip.encode()).hexdigest() else None

    app = create_app(limited(settings, rate_limit_burst=0), store=store)
    app[RATE_OVERRIDE] = override
    async with TestClient(TestServer(app, host="127.0.0.1")) as c:
        resp = await c.get("/api/agents", headers={"Authorization": f"Bearer {vip}"})
        assert resp.headers["X-RateLimit-Limit"] == str(burst_for(50.0, 0)) == "100"
        resp = await c.get("/api/agents", headers={"Authorization": f"Bearer {plain}"})
        assert resp.headers["X-RateLimit-Limit"] == "1"
    assert len(seen) == 2


async def test_a_credential_is_verified_once_while_it_is_remembered_and_again_after(settings, monkeypatch):
    """Hashing and verifying each request's credential was a tenth of the API's loop under load: a credential given
    its own bucket is remembered for a moment (per client address); its rate is still asked on every request."""
    verified: list[str] = []
    rates: list[str] = []
    override_rate: list[float | None] = [None]

    async def user_of(token: str) -> str | None:
        verified.append(token)
        return "alice" if token == "good" else None

    async def override(digest: str) -> float | None:
        rates.append(digest)
        return override_rate[0]

    app = web.Application()
    app[RATE_OVERRIDE] = override
    identify = ratelimit.default_identify(settings.with_(rate_limit_rps=10.0, rate_limit_burst=0), user_of)

    def request(token: str, remote: str = "10.0.0.1"):
        req = make_mocked_request("GET", "/api/agents", headers={"Authorization": f"Bearer {token}"}, app=app)
        return req.clone(remote=remote)

    buckets = [await identify(request("good")) for _ in range(5)]
    assert verified == ["good"] and len(rates) == 5
    assert {b.id for b in buckets} == {"user:alice"} and {b.refusals.id for b in buckets} == {"addr:10.0.0.1"}
    other = await identify(request("good", "10.0.0.2"))  # another address: its own refusals bucket
    assert verified == ["good", "good"] and other.id == "user:alice" and other.refusals.id == "addr:10.0.0.2"
    override_rate[0] = 50.0  # the tenant's own rate applies at once, remembered or not
    assert (await identify(request("good"))).rate == 50.0 and verified == ["good", "good"]
    for _ in range(3):  # a token that does not verify is never remembered: it counts against its address each time
        assert (await identify(request("forged"))).id == "addr:10.0.0.1"
    assert verified.count("forged") == 3
    monkeypatch.setattr(ratelimit, "KNOWN_SECONDS", 0.0)  # what is remembered expires: verified again
    identify = ratelimit.default_identify(settings, user_of)
    for _ in range(2):
        await identify(request("good"))
    assert verified.count("good") == 4


def test_a_memory_bucket_refills_at_its_rate_up_to_its_burst():
    clock = FakeClock()
    buckets = MemoryBuckets(clock=clock)
    decisions = [buckets.take("b", 2.0, 3) for _ in range(4)]
    assert [d.allowed for d in decisions] == [True, True, True, False]
    assert decisions[2].remaining == 0 and decisions[2].reset_unix == int(clock.now) + 2
    assert decisions[3].retry_after_seconds == 1
    clock.now += 0.5  # one token back
    assert buckets.take("b", 2.0, 3).allowed
    assert not buckets.take("b", 2.0, 3).allowed
    clock.now += 3600
    d = buckets.take("b", 2.0, 3)
    assert d.allowed and d.remaining == 2  # never more than the burst


def test_memory_buckets_drop_the_least_recently_used_past_their_bound():
    buckets = MemoryBuckets(max_buckets=3, clock=FakeClock())
    for name in "abcd":
        buckets.take(name, 1.0, 2)
    assert len(buckets) == 3


async def test_an_unreachable_redis_falls_back_to_local_buckets_and_logs_once(settings, store, auth, caplog):
    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        dead = s.getsockname()[1]
    limiter = RateLimiter(f"redis://127.0.0.1:{dead}/0", timeout_seconds=0.2)
    limiter.RETRY_REDIS_SECONDS = 0.0  # try Redis on every request: still one log line per outage
    app = create_app(limited(settings), store=store, rate_limiter=limiter)
    try:
        with caplog.at_level(logging.WARNING, logger="voxarena.ratelimit"):
            async with TestClient(TestServer(app, host="127.0.0.1")) as c:
                h = auth("alice")
                statuses = [(await c.get("/api/agents", headers=h)).status for _ in range(6)]
        assert statuses == [200] * 5 + [429]
        assert len([r for r in caplog.records if "Redis unavailable" in r.getMessage()]) == 1
    finally:
        await limiter.aclose()


# ---- Redis: one real redis-server, two real API processes ----


@pytest.fixture
def redis_server(tmp_path):
    server = start_redis(tmp_path / "redis")
    yield server
    server.stop()


async def test_redis_buckets_are_atomic_under_concurrent_takes(redis_server):
    limiter = RateLimiter(redis_server.url, timeout_seconds=30)  # a slow machine must not fall back to local buckets
    try:
        decisions = await asyncio.gather(*[limiter.take("cred:x", 0.001, 20) for _ in range(60)])
        assert sum(d.allowed for d in decisions) == 20
        assert sorted(d.remaining for d in decisions if d.allowed) == list(range(20))
        assert all(d.retry_after_seconds >= 1 for d in decisions if not d.allowed)
        assert len(limiter.memory) == 0  # served by Redis, not the fallback
    finally:
        await limiter.aclose()


def _get(url: str, token: str) -> tuple[int, dict[str, str]]:
    req = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"})
    try:
        with urllib.request.urlopen(req, timeout=5) as r:
            return r.status, dict(r.headers)
    except urllib.error.HTTPError as e:
        return e.code, dict(e.headers)


def _healthz(base: str) -> bool:
    with urllib.request.urlopen(base + "/healthz", timeout=2) as r:
        return r.status == 200


@pytest.fixture
def two_api_processes(tmp_path, redis_server):
    data = tmp_path / "data"
    env = {k: v for k, v in os.environ.items() if not k.startswith("VOXARENA_")}
    env.update(
        {
            "VOXARENA_DATA_DIR": str(data),
            "VOXARENA_HOST": "127.0.0.1",
            "VOXARENA_REDIS_URL": redis_server.url,
            "VOXARENA_RATE_LIMIT_RPS": "0.001",
            "VOXARENA_RATE_LIMIT_BURST": "10",
            "PYTHONUNBUFFERED": "1",
            "VOXARENA_REDIS_TIMEOUT_SECONDS": "30",
        }
    )  # a loaded machine must not fall back to local buckets
    exe = str(Path(sys.executable).with_name("voxarena"))
    LocalIssuer(data)  # one issuer key for both, made before either starts
    procs, bases = [], []
    try:
        for name in ("api-a", "api-b"):  # both start at once, then each is waited for
            port = free_port("127.0.0.1")
            procs.append(
                ManagedProcess(
                    name,
                    [exe, "serve", "--no-worker"],
                    tmp_path / f"{name}.log",
                    env={**env, "VOXARENA_PORT": str(port)},
                )
            )
            bases.append(f"http://127.0.0.1:{port}")
        for proc, base in zip(procs, bases, strict=True):
            proc.wait_until(lambda base=base: _healthz(base), timeout=60, what="answering /healthz")
        yield bases, data
    finally:
        for proc in procs:
            proc.stop()


def test_two_api_processes_share_one_bucket_through_redis(two_api_processes):
    (a, b), data = two_api_processes
    token = LocalIssuer(data).issue("alice")
    remaining = []
    for i in range(10):
        status, headers = _get((a if i % 2 == 0 else b) + "/api/agents", token)
        assert status == 200, (i, status)
        assert headers["X-RateLimit-Limit"] == "10"
        remaining.append(int(headers["X-RateLimit-Remaining"]))
    assert remaining == list(range(9, -1, -1))  # one count down across both processes
    for base in (a, b):
        status, headers = _get(base + "/api/agents", token)
        assert status == 429 and int(headers["Retry-After"]) >= 1
    # another token: its own bucket, in both processes
    other = LocalIssuer(data).issue("bob")
    assert _get(b + "/api/agents", other)[0] == 200


async def test_remembered_credentials_are_bounded_and_the_expired_go_first(settings, monkeypatch):
    """Each remembered credential is held in full (a JWT is ~1 KB): past KNOWN_MAX the expired ones are dropped, and
    a live one is remembered still."""
    verified: list[str] = []

    async def user_of(token: str) -> str | None:
        verified.append(token)
        return token

    monkeypatch.setattr(ratelimit, "KNOWN_MAX", 3)
    identify = ratelimit.default_identify(settings, user_of)
    app = web.Application()

    def request(token: str):
        return make_mocked_request("GET", "/api/agents", headers={"Authorization": f"Bearer {token}"}, app=app)

    monkeypatch.setattr(ratelimit, "KNOWN_SECONDS", 60.0)
    await identify(request("live"))
    monkeypatch.setattr(ratelimit, "KNOWN_SECONDS", -1.0)  # these expire at once
    for token in ("b", "c"):
        await identify(request(token))
    monkeypatch.setattr(ratelimit, "KNOWN_SECONDS", 60.0)
    await identify(request("d"))  # full: the two expired are dropped to make room, the live one kept
    await identify(request("d"))
    await identify(request("live"))
    assert verified == ["live", "b", "c", "d"]
    for token in ("e", "f"):  # full of live ones: all forgotten
        await identify(request(token))
    await identify(request("live"))
    assert verified[-3:] == ["e", "f", "live"]
