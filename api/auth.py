"""Bearer-token auth: RS256 JWTs verified against a JWKS (Clerk's, or the embedded issuer's).

One verification path serves both modes; only where the JWKS comes from differs: an HTTP fetch (Clerk, or any
OIDC-style issuer) or the embedded issuer's own key. Unknown ``kid``s refetch at most once per interval, so a burst
of forged tokens cannot turn into a burst of JWKS requests.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import jwt
from aiohttp import web
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from jwt.algorithms import RSAAlgorithm

from core.secrets import write_once
from core.settings import Settings

from .errors import Unauthorized

log = logging.getLogger("voxarena.auth")

ALGORITHM = "RS256"
LOCAL_ISSUER = "voxarena-local"


@dataclass(frozen=True)
class Principal:
    """Who is calling: a user (a verified JWT), or an API key acting for its tenant (then ``user_id`` is
    ``key:<key id>`` and ``tenant_id`` is fixed)."""

    user_id: str
    claims: dict[str, Any] = field(default_factory=dict, compare=False)
    key_id: str | None = None
    tenant_id: str | None = None


PRINCIPAL = web.RequestKey("principal", Principal)

JwksFetch = Callable[[], Awaitable[dict[str, Any]]]


class LocalIssuer:
    """The embedded issuer: an RSA key kept in the data dir, used when no Clerk settings are given."""

    def __init__(self, data_dir: Path, *, audience: str | None = None) -> None:
        self.audience = audience
        path = data_dir / "issuer_key.pem"
        if not path.exists():
            data_dir.mkdir(parents=True, exist_ok=True)
            pem = rsa.generate_private_key(public_exponent=65537, key_size=2048).private_bytes(
                serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
            )
            write_once(path, pem)
        loaded = serialization.load_pem_private_key(path.read_bytes(), password=None)
        if not isinstance(loaded, rsa.RSAPrivateKey):
            raise ValueError(f"{path} does not hold an RSA private key")
        self._key: rsa.RSAPrivateKey = loaded
        public = self._key.public_key()
        jwk = json.loads(RSAAlgorithm.to_jwk(public))
        self.kid = RSAAlgorithm.to_jwk(public, as_dict=True)["n"][:16]
        jwk.update({"kid": self.kid, "use": "sig", "alg": ALGORITHM})
        self._jwks = {"keys": [jwk]}

    def jwks(self) -> dict[str, Any]:
        return self._jwks

    def issue(self, user_id: str, *, ttl_seconds: int = 3600, extra: dict[str, Any] | None = None) -> str:
        now = int(time.time())
        claims = {"iss": LOCAL_ISSUER, "sub": user_id, "iat": now, "nbf": now, "exp": now + ttl_seconds}
        if self.audience:
            claims["aud"] = self.audience
        claims.update(extra or {})
        return jwt.encode(claims, self._key, algorithm=ALGORITHM, headers={"kid": self.kid})


def local_issuer(settings: Settings) -> LocalIssuer:
    """The embedded issuer, its tokens carrying the first configured audience (the verifier requires one)."""
    return LocalIssuer(settings.data_dir, audience=settings.jwt_audience[0] if settings.jwt_audience else None)


def http_jwks_fetch(url: str, session: Callable[[], aiohttp.ClientSession]) -> JwksFetch:
    async def fetch() -> dict[str, Any]:
        async with session().get(url, timeout=aiohttp.ClientTimeout(total=10)) as resp:
            resp.raise_for_status()
            return await resp.json(content_type=None)

    return fetch


class JwksCache:
    def __init__(self, fetch: JwksFetch, *, min_refresh_seconds: float, max_age_seconds: float) -> None:
        self._fetch = fetch
        self._min_refresh = min_refresh_seconds
        self._max_age = max_age_seconds
        self._keys: dict[str, Any] = {}
        self._fetched_at = float("-inf")
        self._lock = asyncio.Lock()
        self.fetch_count = 0

    async def key(self, kid: str) -> Any:
        if kid in self._keys and time.monotonic() - self._fetched_at < self._max_age:
            return self._keys[kid]
        async with self._lock:
            # Someone may have refreshed while we waited; refetch only if allowed by the interval.
            age = time.monotonic() - self._fetched_at
            if (kid not in self._keys or age >= self._max_age) and age >= self._min_refresh:
                await self._refresh()
        if kid not in self._keys:
            raise Unauthorized("token signed by an unknown key")
        return self._keys[kid]

    async def _refresh(self) -> None:
        self._fetched_at = time.monotonic()
        self.fetch_count += 1
        try:
            doc = await self._fetch()
        except Exception as e:  # keep the old keys: a JWKS outage must not log everyone out
            log.warning("JWKS fetch failed: %s", e)
            return
        keys: dict[str, Any] = {}
        for jwk in doc.get("keys", []):
            if jwk.get("kty") != "RSA" or jwk.get("use", "sig") != "sig" or "kid" not in jwk:
                continue
            try:
                keys[jwk["kid"]] = RSAAlgorithm.from_jwk(jwk)
            except Exception:
                log.warning("ignoring malformed JWK %s", jwk.get("kid"))
        self._keys = keys


class Verifier:
    def __init__(
        self,
        jwks: JwksCache,
        *,
        issuer: str | None,
        authorized_parties: tuple[str, ...] = (),
        audience: tuple[str, ...] = (),
        leeway_seconds: float = 5.0,
    ) -> None:
        self.jwks = jwks
        self._issuer = issuer
        self._audience = list(audience)
        self._azp = set(authorized_parties)
        self._leeway = leeway_seconds
        # token -> (principal, trusted until): a dashboard sends the same token on every request, and an RSA
        # verify per request dominated the cost of small reads. Entries live at most CACHE_SECONDS (so a key
        # removed from the JWKS stops working within that time) and never past the token's own expiry.
        self._cache: dict[str, tuple[Principal, float]] = {}

    CACHE_SECONDS = 60.0
    CACHE_SIZE = 10_000

    async def verify(self, token: str) -> Principal:
        now = time.time()
        hit = self._cache.get(token)
        if hit is not None and now < hit[1]:
            return hit[0]
        principal = await self._verify(token)
        if len(self._cache) >= self.CACHE_SIZE:
            self._cache.clear()
        exp = float(principal.claims.get("exp", now))
        self._cache[token] = (principal, min(exp, now + self.CACHE_SECONDS))
        return principal

    async def _verify(self, token: str) -> Principal:
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError:
            raise Unauthorized("malformed token") from None
        if header.get("alg") != ALGORITHM:
            raise Unauthorized(f"token algorithm must be {ALGORITHM}")
        kid = header.get("kid")
        if not isinstance(kid, str) or not kid:
            raise Unauthorized("token has no key id")
        key = await self.jwks.key(kid)
        try:
            claims = jwt.decode(
                token,
                key,
                algorithms=[ALGORITHM],
                leeway=self._leeway,
                issuer=self._issuer,
                audience=self._audience or None,
                options={
                    "require": ["exp", "sub", *(["aud"] if self._audience else [])],
                    "verify_aud": bool(self._audience),
                },
            )
        except jwt.ExpiredSignatureError:
            raise Unauthorized("token has expired") from None
        except jwt.ImmatureSignatureError:
            raise Unauthorized("token is not yet valid") from None
        except jwt.InvalidIssuerError:
            raise Unauthorized("token issuer is not accepted") from None
        except jwt.InvalidAudienceError:
            raise Unauthorized("token audience is not accepted") from None
        except jwt.PyJWTError as e:
            raise Unauthorized(f"invalid token: {e}") from None
        sub = claims.get("sub")
        if not isinstance(sub, str) or not sub.strip():
            raise Unauthorized("token has no subject")
        if self._azp and claims.get("azp") not in self._azp:
            raise Unauthorized("token authorized party is not accepted")
        return Principal(user_id=sub, claims=claims)


def principal(request: web.Request) -> Principal:
    return request[PRINCIPAL]


def is_websocket_upgrade(request: web.Request) -> bool:
    return request.method == "GET" and request.headers.get("Upgrade", "").lower() == "websocket"


KeyVerify = Callable[[str, str | None], Awaitable[Principal]]
API_KEY_PREFIX = "vxa_"


def auth_middleware(verifier: Verifier, is_public: Callable[[web.Request], bool], verify_key: KeyVerify) -> Any:
    """A bearer JWT, or an API key as `Authorization: Bearer vxa_...` (Phony), `X-API-Key` (Autonomite, with
    an optional `X-Client-ID` that must name one of the key's tenant's clients) or `x-webhook-token` (004). A
    websocket upgrade may carry the token (JWT or API key) as `?token=` instead."""

    @web.middleware
    async def middleware(request: web.Request, handler: Any) -> web.StreamResponse:
        if is_public(request):
            return await handler(request)
        client_id = request.headers.get("X-Client-ID")
        api_key = request.headers.get("X-API-Key")
        if api_key is None:  # 004's workflows send the tenant's API key as their webhook token
            api_key = request.headers.get("x-webhook-token")
        if api_key is not None:
            request[PRINCIPAL] = await verify_key(api_key.strip(), client_id)
            return await handler(request)
        header = request.headers.get("Authorization", "")
        if not header and "token" in request.query and is_websocket_upgrade(request):
            header = f"Bearer {request.query['token']}"  # a browser's WebSocket cannot send headers
        scheme, _, token = header.partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token:
            raise Unauthorized("missing bearer token or X-API-Key")
        if token.startswith(API_KEY_PREFIX):
            request[PRINCIPAL] = await verify_key(token, client_id)
        else:
            request[PRINCIPAL] = await verifier.verify(token)
        return await handler(request)

    return middleware
