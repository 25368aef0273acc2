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
import math
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

from aiohttp import web

from core.store import accounts as repo
from core.store.db import Store

from .. import passwords
from ..auth import LocalIssuer


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
    wait = throttle.retry_after([account_key, address_key])
    if wait > 0:
        raise TooManyFailures(max(1, math.ceil(wait)))
    throttle.begin([account_key, address_key])
    user = await store.read(repo.get_by_email, email)
    async with throttle.checking:
        if user is None:
            await asyncio.to_thread(passwords.verify_nobody, password)
            raise InvalidCredentials()
        if not await asyncio.to_thread(passwords.verify_password, user["password_hash"], password):
            raise InvalidCredentials()
    throttle.succeeded(account_key=account_key, address_key=address_key)
    if passwords.needs_rehash(user["password_hash"]):
        async with throttle.checking:
            new_hash = await asyncio.to_thread(passwords.hash_password, password)
        await store.write(repo.set_password_hash, user["id"], new_hash)
    return issuer.issue(user["id"], ttl_seconds=ttl_seconds)
