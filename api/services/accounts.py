"""Logging in with a local account: throttle check, password check in a thread, a token from the embedded issuer.

Repeated failures are slowed per account and per client address: after ``free_failures`` consecutive failures a key
is refused (429 with Retry-After, the password not even checked) for a pause that doubles with each further failure,
up to ``max_pause_seconds``. An attempt counts as a failure from the moment it starts, so a volley of concurrent
guesses cannot all slip in before the first of them is judged; a success takes its own count back and clears the
account's (not the address's: one working login must not buy an address more guesses at other accounts). The
counters live in this process's memory and are forgotten after ``forget_after_seconds`` without failures.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from core.store import accounts as repo
from core.store.db import Store

from .. import passwords
from ..auth import LocalIssuer

log = logging.getLogger("voxarena.accounts")


class InvalidCredentials(Exception):
    """Unknown email or wrong password: deliberately one error for both."""


class TooManyFailures(Exception):
    def __init__(self, retry_after_seconds: int) -> None:
        super().__init__(f"too many failed logins; retry in {retry_after_seconds} s")
        self.retry_after_seconds = retry_after_seconds


@dataclass
class _Failures:
    count: int = 0
    last_at: float = 0.0


class LoginThrottle:
    def __init__(
        self,
        *,
        free_failures: int = 5,
        first_pause_seconds: float = 1.0,
        max_pause_seconds: float = 300.0,
        forget_after_seconds: float = 900.0,
        max_keys: int = 100_000,
        max_concurrent_checks: int = 4,
        clock: Callable[[], float] = time.monotonic,
        redis_url: str = "",
        redis_timeout_seconds: float = 0.5,
    ) -> None:
        self.free_failures = free_failures
        self.first_pause = first_pause_seconds
        self.max_pause = max_pause_seconds
        self.forget_after = forget_after_seconds
        self._max_keys = max_keys
        self._clock = clock
        self._keys: OrderedDict[str, _Failures] = OrderedDict()
        # Each argon2 check takes 64 MiB and ~0.1 s of a core: a flood of logins from many addresses queues here
        # instead of filling every executor thread (and the memory) at once.
        self.checking = asyncio.Semaphore(max_concurrent_checks)
        # With Redis the failures are counted once for every API node (an attacker gets the free failures once, not
        # once per node); while Redis is unreachable this process counts its own, as the rate limits do.
        self._redis: Any = None
        self._down_until = float("-inf")
        if redis_url:
            import redis.asyncio as aioredis

            self._redis = aioredis.Redis.from_url(
                redis_url, socket_timeout=redis_timeout_seconds, socket_connect_timeout=redis_timeout_seconds
            )
            self._begin_script = self._redis.register_script(_BEGIN)
            self._read_script = self._redis.register_script(_READ)
            self._succeed_script = self._redis.register_script(_SUCCEED)

    async def _shared(self, script: str, keys: list[str], args: list[Any]) -> Any:
        """Run a script on Redis; None while Redis cannot be used (then this process's counts decide)."""
        if self._redis is None or self._clock() < self._down_until:
            return None
        try:
            return await getattr(self, script)(keys=[_REDIS_PREFIX + k for k in keys], args=args)
        except Exception as e:
            if self._down_until == float("-inf") or self._clock() >= self._down_until:
                log.warning("login throttle: Redis unavailable (%s); counting failures in this process", e)
            self._down_until = self._clock() + 5.0
            return None

    async def check(self, keys: list[str]) -> float:
        """Seconds until every key may try again (0: now), counted across nodes when Redis is shared."""
        state = await self._shared("_read_script", keys, [])
        if state is None:
            return self.retry_after(keys)
        wait = 0.0
        for count, elapsed in zip(state[0::2], state[1::2], strict=True):
            if count is not None and float(elapsed) < self.forget_after:
                wait = max(wait, self.pause(int(count)) - float(elapsed))
        return wait

    async def attempt(self, keys: list[str]) -> None:
        if await self._shared("_begin_script", keys, [int(self.forget_after * 1000)]) is None:
            self.begin(keys)

    async def success(self, *, account_key: str, address_key: str) -> None:
        if await self._shared("_succeed_script", [account_key, address_key], []) is None:
            self.succeeded(account_key=account_key, address_key=address_key)

    async def aclose(self) -> None:
        if self._redis is not None:
            await self._redis.aclose()

    def pause(self, count: int) -> float:
        """How long a key with ``count`` consecutive failures is refused after its last one."""
        if count < self.free_failures:
            return 0.0
        return min(self.max_pause, self.first_pause * 2 ** (count - self.free_failures))

    def retry_after(self, keys: list[str]) -> float:
        """Seconds until every key may try again (0: now)."""
        now = self._clock()
        wait = 0.0
        for key in keys:
            f = self._keys.get(key)
            if f is None:
                continue
            if now - f.last_at >= self.forget_after:
                del self._keys[key]
                continue
            wait = max(wait, f.last_at + self.pause(f.count) - now)
        return wait

    def begin(self, keys: list[str]) -> None:
        """An attempt starts: count it as a failure until it succeeds."""
        now = self._clock()
        for key in keys:
            f = self._keys.pop(key, None) or _Failures()
            f.count += 1
            f.last_at = now
            self._keys[key] = f
        while len(self._keys) > self._max_keys:
            self._keys.popitem(last=False)

    def succeeded(self, *, account_key: str, address_key: str) -> None:
        self._keys.pop(account_key, None)
        f = self._keys.get(address_key)
        if f is not None:
            f.count = max(0, f.count - 1)


_REDIS_PREFIX = "voxarena:login:"
# Each key a hash {count, last} (Redis server time), expiring when it would be forgotten anyway.
_BEGIN = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
for _, key in ipairs(KEYS) do
  redis.call('HINCRBY', key, 'count', 1)
  redis.call('HSET', key, 'last', tostring(now))
  redis.call('PEXPIRE', key, ARGV[1])
end
return 1
"""
_READ = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local out = {}
for _, key in ipairs(KEYS) do
  local v = redis.call('HMGET', key, 'count', 'last')
  if v[1] then
    table.insert(out, v[1])
    table.insert(out, tostring(now - tonumber(v[2])))
  else
    table.insert(out, false)
    table.insert(out, '0')
  end
end
return out
"""
_SUCCEED = """
redis.call('DEL', KEYS[1])
if redis.call('EXISTS', KEYS[2]) == 1 then
  local n = redis.call('HINCRBY', KEYS[2], 'count', -1)
  if n < 0 then redis.call('HSET', KEYS[2], 'count', 0) end
end
return 1
"""

LOGIN_THROTTLE = web.AppKey("login_throttle", LoginThrottle)


def throttle_keys(email: str, address: str) -> tuple[str, str]:
    return f"account:{repo.normalize_email(email).lower()}", f"address:{address}"


async def login(
    store: Store,
    issuer: LocalIssuer,
    throttle: LoginThrottle,
    *,
    email: str,
    password: str,
    address: str,
    ttl_seconds: int,
) -> str:
    """A bearer token for the account, or InvalidCredentials / TooManyFailures."""
    account_key, address_key = throttle_keys(email, address)
    wait = await throttle.check([account_key, address_key])
    if wait > 0:
        raise TooManyFailures(max(1, math.ceil(wait)))
    await throttle.attempt([account_key, address_key])
    user = await store.read(repo.get_by_email, email)
    async with throttle.checking:
        if user is None:
            await asyncio.to_thread(passwords.verify_nobody, password)
            raise InvalidCredentials()
        if not await asyncio.to_thread(passwords.verify_password, user["password_hash"], password):
            raise InvalidCredentials()
    await throttle.success(account_key=account_key, address_key=address_key)
    if passwords.needs_rehash(user["password_hash"]):
        async with throttle.checking:
            new_hash = await asyncio.to_thread(passwords.hash_password, password)
        await store.write(repo.set_password_hash, user["id"], new_hash)
    return issuer.issue(user["id"], ttl_seconds=ttl_seconds)
