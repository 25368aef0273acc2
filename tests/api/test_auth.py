"""The JWT attack matrix against a Clerk-style issuer whose JWKS is served over HTTP on loopback."""

from __future__ import annotations

import asyncio
import base64
import json
import time
import uuid

import jwt
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from jwt.algorithms import RSAAlgorithm

from api.app import create_app
from api.keys import VERIFIER
from core.settings import Settings
from core.store.db import Store
from tests.conftest import assert_error, table_snapshot

ISSUER = "https://clerk.test.local"
KID = "clerk-key-1"


def _key():
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.fixture(scope="module")
def keys():
    return {"good": _key(), "evil": _key()}


@pytest.fixture
async def jwks_server(keys):
    counter = {"fetches": 0}

    async def jwks(_request):
        counter["fetches"] += 1
        jwk = RSAAlgorithm.to_jwk(keys["good"].public_key(), as_dict=True)
        jwk.update(kid=KID, use="sig", alg="RS256")
        return web.json_response({"keys": [jwk]})

    app = web.Application()
    app.router.add_get("/.well-known/jwks.json", jwks)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    yield server, counter
    await server.close()


@pytest.fixture
def audience() -> tuple[str, ...]:
    return ()


@pytest.fixture
async def clerk_client(tmp_path, jwks_server, audience):
    server, counter = jwks_server
    settings = Settings(
        data_dir=tmp_path / "d",
        clerk_issuer=ISSUER,
        clerk_jwks_url=str(server.make_url("/.well-known/jwks.json")),
        clerk_authorized_parties=("https://app.example.com",),
        worker_enabled=False,
        jwt_audience=audience,
    )
    store = Store(settings.database_path)
    async with TestClient(TestServer(create_app(settings, store=store), host="127.0.0.1")) as c:
        yield c, settings, counter
    store.close()


def claims(**over):
    now = int(time.time())
    base = {
        "iss": ISSUER,
        "sub": "user_alice",
        "iat": now,
        "nbf": now,
        "exp": now + 300,
        "azp": "https://app.example.com",
    }
    base.update(over)
    return {k: v for k, v in base.items() if v is not None}


def sign(key, payload, kid=KID, alg="RS256"):
    return jwt.encode(payload, key, algorithm=alg, headers={"kid": kid})


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def alg_none(payload):
    return f"{b64(json.dumps({'alg': 'none', 'kid': KID, 'typ': 'JWT'}).encode())}.{b64(json.dumps(payload).encode())}."


def hs256_with_public_key(keys, payload):
    # The classic confusion attack: HMAC keyed with the RSA public key PEM.
    import hashlib
    import hmac

    pem = (
        keys["good"]
        .public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    head = b64(json.dumps({"alg": "HS256", "kid": KID, "typ": "JWT"}).encode())
    body = b64(json.dumps(payload).encode())
    sig = hmac.new(pem, f"{head}.{body}".encode(), hashlib.sha256).digest()
    return f"{head}.{body}.{b64(sig)}"


async def test_a_valid_clerk_token_is_accepted(clerk_client, keys):
    client, _, _ = clerk_client
    token = sign(keys["good"], claims())
    resp = await client.post(
        "/api/agents", json={"name": "a", "systemPrompt": "b"}, headers={"Authorization": f"Bearer {token}"}
    )
    assert resp.status == 201


ATTACKS = {
    "expired": lambda k: sign(k["good"], claims(exp=int(time.time()) - 60, iat=int(time.time()) - 400)),
    "not yet valid": lambda k: sign(k["good"], claims(nbf=int(time.time()) + 120)),
    "wrong key": lambda k: sign(k["evil"], claims()),
    "alg none": lambda k: alg_none(claims()),
    "HS256 keyed with the public key": lambda k: hs256_with_public_key(k, claims()),
    "unknown kid": lambda k: sign(k["good"], claims(), kid="not-a-kid"),
    "wrong azp": lambda k: sign(k["good"], claims(azp="https://evil.example.com")),
    "missing sub": lambda k: sign(k["good"], claims(sub=None)),
    "empty sub": lambda k: sign(k["good"], claims(sub="")),
    "wrong issuer": lambda k: sign(k["good"], claims(iss="https://other.example.com")),
    "no exp": lambda k: sign(k["good"], claims(exp=None)),
    "garbage": lambda k: "not.a.jwt",
}


@pytest.mark.parametrize("attack", sorted(ATTACKS))
async def test_forged_or_invalid_tokens_are_401_and_write_nothing(clerk_client, keys, attack):
    client, settings, _ = clerk_client
    before = table_snapshot(settings)
    token = ATTACKS[attack](keys)
    resp = await client.post(
        "/api/agents", json={"name": "a", "systemPrompt": "b"}, headers={"Authorization": f"Bearer {token}"}
    )
    await assert_error(resp, 401, "unauthorized")
    assert table_snapshot(settings) == before


async def test_a_bare_user_id_header_is_never_trusted(clerk_client):
    client, _, _ = clerk_client
    for headers in ({"x-user-id": "user_alice"}, {"x-user-id": "user_alice", "Authorization": "Basic Zm9vOmJhcg=="}):
        await assert_error(await client.get("/api/agents", headers=headers), 401, "unauthorized")


async def test_a_burst_of_random_kids_causes_at_most_a_couple_of_jwks_fetches(clerk_client, keys):
    client, _, counter = clerk_client
    good = sign(keys["good"], claims())
    assert (await client.get("/api/agents", headers={"Authorization": f"Bearer {good}"})).status == 200
    forged = [sign(keys["evil"], claims(), kid=uuid.uuid4().hex) for _ in range(200)]
    results = await asyncio.gather(
        *[client.get("/api/agents", headers={"Authorization": f"Bearer {t}"}) for t in forged]
    )
    assert {r.status for r in results} == {401}
    assert counter["fetches"] <= 2, counter
    assert client.app[VERIFIER].jwks.fetch_count == counter["fetches"]
    # the genuine key keeps working afterwards
    assert (await client.get("/api/agents", headers={"Authorization": f"Bearer {good}"})).status == 200


async def test_public_routes_need_no_token(clerk_client):
    client, _, _ = clerk_client
    assert (await client.get("/health")).status == 200
    assert (await client.get("/openapi.json")).status == 200


async def _post_agent(client, token: str):
    return await client.post(
        "/api/agents", json={"name": "a", "systemPrompt": "b"}, headers={"Authorization": f"Bearer {token}"}
    )


async def test_without_an_audience_configured_aud_is_not_checked(clerk_client, keys):
    client, _, _ = clerk_client
    for aud in (None, "anything", ["a", "b"]):
        assert (await _post_agent(client, sign(keys["good"], claims(aud=aud)))).status == 201


@pytest.mark.parametrize("audience", [("https://api.voxarena.test", "voxarena")])
async def test_with_an_audience_configured_a_token_must_name_one_of_them(clerk_client, keys):
    client, settings, _ = clerk_client
    before = table_snapshot(settings)
    for aud in (None, "https://other.test", ["https://other.test", "also-not"], ""):
        body = await assert_error(await _post_agent(client, sign(keys["good"], claims(aud=aud))), 401)
        assert "aud" in body["detail"], body
    assert table_snapshot(settings) == before
    for aud in ("voxarena", ["https://other.test", "https://api.voxarena.test"]):
        assert (await _post_agent(client, sign(keys["good"], claims(aud=aud)))).status == 201


async def test_the_embedded_issuers_tokens_carry_the_configured_audience_and_verify(tmp_path):
    from api.auth import local_issuer
    from api.keys import ISSUER as LOCAL

    settings = Settings(data_dir=tmp_path / "d", worker_enabled=False, jwt_audience=("voxarena", "other"))
    store = Store(settings.database_path)
    try:
        async with TestClient(TestServer(create_app(settings, store=store), host="127.0.0.1")) as client:
            minted = client.app[LOCAL].issue("alice")
            assert jwt.decode(minted, options={"verify_signature": False})["aud"] == "voxarena"
            assert (await _post_agent(client, minted)).status == 201
            assert (await _post_agent(client, local_issuer(settings).issue("bob"))).status == 201  # the CLI's
            unaudienced = local_issuer(settings.with_(jwt_audience=())).issue("carol")
            await assert_error(await _post_agent(client, unaudienced), 401)
    finally:
        store.close()
