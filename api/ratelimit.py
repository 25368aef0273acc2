"""Rate limits: a token bucket per credential (or client address), in this process or shared through Redis.

Each bucket holds up to ``burst`` tokens and refills at ``rate`` tokens per second; a request takes one token or is
refused with 429. The headers every limited response carries describe the bucket: ``X-RateLimit-Limit`` is its
size, ``X-RateLimit-Remaining`` the whole tokens left, ``X-RateLimit-Reset`` the unix second by which it is full
again.

With a Redis URL the buckets live in Redis (one hash per bucket, updated by one Lua script, so concurrent API
processes take tokens atomically and on Redis's clock). A Redis outage must not take the API down: the limiter logs
once, serves from its in-process buckets, and tries Redis again after a short pause.
"""

from __future__ import annotations

import hashlib
import logging
import math
import time
from collections import OrderedDict
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any, NamedTuple

from aiohttp import web

from core.settings import Settings
from core.store.apikeys import KEY_PREFIX as API_KEY_PREFIX

from .errors import RateLimited, exception_response

log = logging.getLogger("voxarena.ratelimit")

LOGIN_PATH = "/api/v1/auth/login"
LIMITED_PREFIXES = ("/api", "/tenants", "/trigger-agent")


@dataclass(frozen=True)
class Bucket:
    id: str
    rate: float  # tokens per second
    burst: int  # capacity
    # where a refused credential (a 401) is charged as well: the client address, when this bucket is not already it
    refusals: Bucket | None = None


class Decision(NamedTuple):  # one per request: a tuple is built in a fraction of a frozen dataclass's time
    allowed: bool
    limit: int
    remaining: int
    reset_unix: int
    retry_after_seconds: int  # 0 when allowed, else at least 1

    def headers(self) -> dict[str, str]:
        return {
            "X-RateLimit-Limit": str(self.limit),
            "X-RateLimit-Remaining": str(self.remaining),
            "X-RateLimit-Reset": str(self.reset_unix),
        }


def burst_for(rate: float, configured: int) -> int:
    """The bucket size: the configured one, or (0) twice the rate, never below one request."""
    return configured if configured > 0 else max(1, math.ceil(2 * rate))


def _decide(allowed: bool, tokens: float, now: float, rate: float, burst: int) -> Decision:
    """``tokens``: what is left after this request (if it was allowed); ``now``: unix seconds."""
    reset = math.ceil(now + max(0.0, burst - tokens) / rate)
    retry = 0 if allowed else max(1, math.ceil((1.0 - tokens) / rate))
    return Decision(
        allowed=allowed, limit=burst, remaining=max(0, math.floor(tokens)), reset_unix=reset, retry_after_seconds=retry
    )


class MemoryBuckets:
    """Token buckets in this process. Least recently used buckets are dropped past ``max_buckets``: one unused for
    long is full again anyway, so dropping it changes nothing."""

    def __init__(self, *, max_buckets: int = 100_000, clock: Callable[[], float] = time.time) -> None:
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()  # id -> (tokens, at)
        self._max = max_buckets
        self._clock = clock

    def take(self, bucket_id: str, rate: float, burst: int) -> Decision:
        now = self._clock()
        tokens, at = self._buckets.get(bucket_id, (float(burst), now))
        tokens = min(float(burst), tokens + max(0.0, now - at) * rate)
        allowed = tokens >= 1.0
        if allowed:
            tokens -= 1.0
        self._buckets[bucket_id] = (tokens, now)
        self._buckets.move_to_end(bucket_id)
        while len(self._buckets) > self._max:
            self._buckets.popitem(last=False)
        return _decide(allowed, tokens, now, rate, burst)

    def __len__(self) -> int:
        return len(self._buckets)


# KEYS[1]: the bucket; ARGV: rate (tokens/s), burst. Time is Redis's own, so API nodes with skewed clocks agree.
# Floats go back as strings: Redis truncates Lua numbers in replies to integers.
TAKE_SCRIPT = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local rate = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local state = redis.call('HMGET', KEYS[1], 'tokens', 'at')
local tokens = tonumber(state[1])
local at = tonumber(state[2])
if tokens == nil or at == nil then
  tokens = burst
  at = now
end
tokens = math.min(burst, tokens + math.max(0, now - at) * rate)
local allowed = 0
if tokens >= 1 then
  tokens = tokens - 1
  allowed = 1
end
redis.call('HSET', KEYS[1], 'tokens', tostring(tokens), 'at', tostring(now))
redis.call('PEXPIRE', KEYS[1], math.ceil(burst / rate * 1000) + 1000)
return {allowed, tostring(tokens), tostring(now)}
"""


class RateLimiter:
    """Takes tokens from buckets in Redis (with a URL) or in this process."""

    KEY_PREFIX = "voxarena:ratelimit:"
    RETRY_REDIS_SECONDS = 5.0  # after a failure, serve from memory this long before trying Redis again

    def __init__(
        self, redis_url: str = "", *, timeout_seconds: float = 0.5, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.memory = MemoryBuckets()
        self._clock = clock
        self._redis: Any = None
        self._script: Any = None
        self._down_until = float("-inf")
        self._outage_logged = False
        if redis_url:
            import redis.asyncio as aioredis

            self._redis = aioredis.Redis.from_url(
                redis_url, socket_timeout=timeout_seconds, socket_connect_timeout=timeout_seconds
            )
            self._script = self._redis.register_script(TAKE_SCRIPT)

    @property
    def shared(self) -> bool:
        """True when buckets are (meant to be) kept in Redis."""
        return self._redis is not None

    async def take(self, bucket_id: str, rate: float, burst: int) -> Decision:
        if self._redis is not None and self._clock() >= self._down_until:
            try:
                allowed, tokens, now = await self._script(keys=[self.KEY_PREFIX + bucket_id], args=[rate, burst])
            except Exception as e:
                self._down_until = self._clock() + self.RETRY_REDIS_SECONDS
                if not self._outage_logged:
                    self._outage_logged = True
                    log.warning("rate limits: Redis unavailable (%s); using this process's buckets until it is back", e)
            else:
                if self._outage_logged:
                    self._outage_logged = False
                    log.warning("rate limits: Redis is back; buckets are shared again")
                return _decide(bool(int(allowed)), float(tokens), float(now), rate, burst)
        return self.memory.take(bucket_id, rate, burst)

    async def aclose(self) -> None:
        if self._redis is not None:
            await self._redis.aclose()


RATE_LIMITER = web.AppKey("rate_limiter", RateLimiter)
# An optional per-credential rate (tenants' `rate_limit_rps`): given the credential's sha256 hex digest, the rate
# for its bucket, or None for the default. It runs on every limited request, so it should answer from memory.
RATE_OVERRIDE: web.AppKey[Callable[[str], Awaitable[float | None]]] = web.AppKey("rate_override")

Identify = Callable[[web.Request], Awaitable[Bucket | None]]


# the sha256 hex digest of the request's credential, once the rate limiter has computed it
CREDENTIAL_SHA256 = web.RequestKey("credential_sha256", str)


_LIMITED_EXACT = frozenset(LIMITED_PREFIXES)
_LIMITED_UNDER = tuple(p + "/" for p in LIMITED_PREFIXES)


def is_limited_path(path: str) -> bool:
    return path in _LIMITED_EXACT or path.startswith(_LIMITED_UNDER)


def credential(request: web.Request) -> str | None:
    """The credential a request presents: its bearer token, else its X-API-Key; None when it sends neither."""
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() == "bearer" and token.strip():
        return token.strip()
    key = request.headers.get("X-API-Key", "").strip() or request.headers.get("x-webhook-token", "").strip()
    return key or None


def client_address(request: web.Request) -> str:
    # The peer address: behind a reverse proxy every client shares the proxy's, so limit there too.
    return request.remote or "unknown"


UserOf = Callable[[str], Awaitable[str | None]]
KeyOk = Callable[[str], Awaitable[bool]]


class _Accepted:
    """API keys (by digest) that ``key_ok`` accepted within the last ``seconds``: their requests skip the lookup."""

    def __init__(self, seconds: float, *, max_size: int = 100_000) -> None:
        self.seconds = seconds
        self._until: OrderedDict[str, float] = OrderedDict()
        self._max = max_size

    def __contains__(self, digest: str) -> bool:
        until = self._until.get(digest)
        return until is not None and time.monotonic() < until

    def add(self, digest: str) -> None:
        self._until[digest] = time.monotonic() + self.seconds
        self._until.move_to_end(digest)
        while len(self._until) > self._max:
            self._until.popitem(last=False)


KEY_TRUST_SECONDS = 60.0


KNOWN_SECONDS = 1.0  # how long a credential's bucket is remembered (its rate is still asked on every request)
KNOWN_MAX = 10_000  # credentials remembered at once (each for KNOWN_SECONDS)


def default_identify(settings: Settings, user_of: UserOf | None = None, key_ok: KeyOk | None = None) -> Identify:
    """The login route by client address at RATE_LIMIT_AUTH_RPS; everything else under /api and /tenants at
    RATE_LIMIT_RPS (or the rate ``RATE_OVERRIDE`` gives) per user, per API key, or per address:

    - a bearer JWT that ``user_of`` verifies: the user (``user:<sub>``), so a user whose tokens rotate (Clerk renews
      its session tokens every minute) keeps one bucket; a token that does not verify counts against its address;
    - an API key that ``key_ok`` accepts (asked at most once per KEY_TRUST_SECONDS per key): that key
      (``cred:<sha256>``); one it refuses counts against its address, so random keys cannot each get a fresh bucket;
    - no credential: the client address.

    A request refused with 401 on its own bucket (a key revoked since it was last accepted, a wrong X-Client-ID) is
    charged to its address as well.

    A credential that was given its own bucket is remembered with that bucket for KNOWN_SECONDS (per client
    address), so its next requests skip hashing it and verifying it again: at thousands of requests a second that
    work was a tenth of the API's loop. A JWT that expires meanwhile still reaches the auth check, which refuses it
    (and charges the address); the rate is asked on every request, so a tenant's own rate applies at once."""
    accepted = _Accepted(KEY_TRUST_SECONDS)
    known: dict[tuple[str, str], tuple[float, str, str, Bucket]] = {}  # (cred, addr) -> (until, id, digest, bucket)

    async def identify(request: web.Request) -> Bucket | None:
        path = request.path
        if not path.startswith(LIMITED_PREFIXES):  # a cheap first test
            return None
        path = path.rstrip("/") or "/"
        if not is_limited_path(path):
            return None
        if path == LOGIN_PATH:
            rate = settings.rate_limit_auth_rps
            return Bucket(f"auth:{client_address(request)}", rate, burst_for(rate, settings.rate_limit_burst))
        cred = credential(request)
        addr = client_address(request)
        if cred is not None:
            hit = known.get((cred, addr))
            if hit is not None and time.monotonic() < hit[0]:
                _, bucket_id, digest, bucket = hit
                request[CREDENTIAL_SHA256] = digest
                rate = await _rate(request, digest, settings.rate_limit_rps)
                if rate == bucket.rate:
                    return bucket
                return Bucket(bucket_id, rate, burst_for(rate, settings.rate_limit_burst), refusals=bucket.refusals)
        rate = settings.rate_limit_rps
        address = Bucket(f"addr:{addr}", rate, burst_for(rate, settings.rate_limit_burst))
        if cred is None:
            return address
        digest = hashlib.sha256(cred.encode()).hexdigest()
        bucket_id = f"cred:{digest}"
        if cred.startswith(API_KEY_PREFIX):
            if key_ok is not None and digest not in accepted:
                if not await key_ok(cred):
                    return address
                accepted.add(digest)
        elif user_of is not None:
            user = await user_of(cred)
            if user is None:
                return address
            bucket_id = f"user:{user}"
        request[CREDENTIAL_SHA256] = digest
        rate = await _rate(request, digest, rate)
        bucket = Bucket(bucket_id, rate, burst_for(rate, settings.rate_limit_burst), refusals=address)
        if len(known) >= KNOWN_MAX:  # credentials are long (a JWT ~1 KB): forget the expired, else all
            now = time.monotonic()
            for key in [k for k, v in known.items() if v[0] <= now]:
                del known[key]
            if len(known) >= KNOWN_MAX:
                known.clear()
        known[(cred, addr)] = (time.monotonic() + KNOWN_SECONDS, bucket_id, digest, bucket)
        return bucket

    async def _rate(request: web.Request, digest: str, default: float) -> float:
        override = request.app.get(RATE_OVERRIDE)
        if override is not None:
            custom = await override(digest)
            if custom is not None and custom > 0:
                return custom
        return default

    return identify


_DECISION = web.RequestKey("rate_decision", Decision)


async def add_headers(request: web.Request, response: web.StreamResponse) -> None:
    """``on_response_prepare``: every limited response carries its bucket's headers, whoever prepares it."""
    decision = request.get(_DECISION)
    if decision is not None:
        response.headers.update(decision.headers())


def ratelimit_middleware(limiter: RateLimiter, identify: Identify) -> Any:
    """Place it inside the error middleware and before auth, so refused and unauthenticated responses carry the
    headers too."""

    @web.middleware
    async def middleware(request: web.Request, handler: Any) -> web.StreamResponse:
        bucket = await identify(request)
        if bucket is None:
            return await handler(request)
        decision = await limiter.take(bucket.id, bucket.rate, bucket.burst)
        if not decision.allowed:
            err = RateLimited(
                f"rate limit exceeded: at most {bucket.rate:g} requests per second "
                f"(bursts of {bucket.burst}); retry in {decision.retry_after_seconds} s",
                retry_after=decision.retry_after_seconds,
            )
            err.headers.update(decision.headers())
            raise err
        request[_DECISION] = decision  # headers added as the response is prepared, streamed ones included
        try:
            resp = await handler(request)
        except web.HTTPException as e:
            if e.status < 400:
                e.headers.update(decision.headers())
                raise
            resp = exception_response(request, e)
        except Exception as e:
            resp = exception_response(request, e)
        if resp.status == 401 and bucket.refusals is not None:
            await limiter.take(bucket.refusals.id, bucket.refusals.rate, bucket.refusals.burst)
        return resp

    return middleware


def cleanup_ctx(limiter: RateLimiter) -> Callable[[web.Application], AsyncIterator[None]]:
    async def ctx(app: web.Application) -> AsyncIterator[None]:
        yield
        await limiter.aclose()

    return ctx
