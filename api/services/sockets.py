"""What every credentialed socket (`/ws/chat`, `/events/ws`) is held to after its handshake.

- **Standing.** A socket outlives the request that opened it, so its credential is read again from the store
  (never a process's cache: a key may be revoked, a member removed or a tenant suspended through another API node)
  every ``recheck_seconds`` by one owned task for all sockets, and by a chat socket before each message it answers.
  A revoked key ends its sockets with 4401; a tenant suspended, or a user no longer a member of it, with 4403.
- **Caps.** Each socket holds a lease in a scope per credential and per tenant; past a scope's limit the handshake
  is refused. With ``VOXARENA_REDIS_URL`` the leases are Redis sorted sets shared by every API process (a lease
  expires unless its process renews it, so a process that dies frees its places within ``LEASE_SECONDS``); while
  Redis is unreachable, as for rate limits, each process counts its own.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any

import sqlite_utils

from core.periodic import Periodic
from core.store import accounts, apikeys
from core.store import tenants as tenants_repo
from core.store.db import Store

from ..auth import Principal

log = logging.getLogger("voxarena.sockets")

CLOSE_CREDENTIAL_GONE = 4401  # the API key was revoked (or its tenant deleted)
CLOSE_NOT_ALLOWED = 4403  # the tenant is suspended, or the user is no longer a member of it


@dataclass(frozen=True)
class Refusal:
    code: int
    reason: str


@dataclass(frozen=True)
class Holder:
    """Who opened a socket, and for which tenant."""

    principal: Principal
    tenant_id: str

    @property
    def credential(self) -> str:
        return self.principal.user_id  # a user, or "key:<id>" for an API key


def standing(db: sqlite_utils.Database, holder: Holder, admins: frozenset[str]) -> Refusal | None:
    """Why this holder may no longer use its socket (None: it still may), read from the store."""
    p, tenant_id = holder.principal, holder.tenant_id
    if p.key_id is not None and not apikeys.exists(db, tenant_id, p.key_id):
        return Refusal(CLOSE_CREDENTIAL_GONE, "API key revoked")
    tenant = tenants_repo.find(db, tenant_id)
    personal = p.key_id is None and tenant_id == tenants_repo.personal_tenant_id(p.user_id)
    if tenant is None and not personal:  # a user's personal tenant may be unstored: it is then active
        return Refusal(CLOSE_CREDENTIAL_GONE if p.key_id is not None else CLOSE_NOT_ALLOWED, "tenant gone")
    if tenant is not None and tenant["status"] == "suspended":
        return Refusal(CLOSE_NOT_ALLOWED, "tenant suspended")
    if (
        p.key_id is None
        and not personal
        and tenants_repo.role_of(db, tenant_id, p.user_id) is None
        and p.user_id not in admins
        and not accounts.is_admin(db, p.user_id)
    ):
        return Refusal(CLOSE_NOT_ALLOWED, "no longer a member of the tenant")
    return None


@dataclass(eq=False)
class Watch:
    """One open socket's standing: ``refused`` is set (with why) once its holder may no longer use it."""

    holder: Holder
    refused: asyncio.Event = field(default_factory=asyncio.Event)
    refusal: Refusal | None = None

    def refuse(self, refusal: Refusal) -> None:
        if self.refusal is None:
            self.refusal = refusal
            self.refused.set()


class TooManySockets(Exception):
    pass


# KEYS: one sorted set per scope (member: a socket's lease id, score: when the lease expires, in ms of Redis's clock).
# ARGV[1]: the lease id, ARGV[2]: the lease in ms, ARGV[2+i]: the limit of KEYS[i]. Returns 0 when taken, else the
# index of the first full scope: all scopes or none, atomically, so processes racing cannot overfill one.
ACQUIRE_SCRIPT = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local lease = tonumber(ARGV[2])
for i, key in ipairs(KEYS) do
  redis.call('ZREMRANGEBYSCORE', key, '-inf', now)
  if redis.call('ZCARD', key) >= tonumber(ARGV[2 + i]) then
    return i
  end
end
for i, key in ipairs(KEYS) do
  redis.call('ZADD', key, now + lease, ARGV[1])
  redis.call('PEXPIRE', key, lease * 2)
end
return 0
"""

# KEYS: scopes; ARGV[1]: the lease in ms, ARGV[2..]: pairs of (scope index, lease id) to renew.
RENEW_SCRIPT = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local lease = tonumber(ARGV[1])
for i = 2, #ARGV, 2 do
  local key = KEYS[tonumber(ARGV[i])]
  redis.call('ZADD', key, 'XX', now + lease, ARGV[i + 1])
  redis.call('PEXPIRE', key, lease * 2)
end
return 0
"""


@dataclass(frozen=True)
class Scope:
    key: str  # e.g. "chat:cred:key:key_123"
    limit: int
    what: str  # for the refusal: "per credential"


@dataclass(eq=False)
class Lease:
    id: str
    scopes: tuple[Scope, ...]
    shared: bool  # held in Redis (else in this process)


class SocketLeases:
    KEY_PREFIX = "voxarena:sockets:"
    LEASE_SECONDS = 60.0
    RETRY_REDIS_SECONDS = 5.0

    def __init__(
        self, redis_url: str = "", *, timeout_seconds: float = 0.5, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._local: dict[str, set[str]] = {}
        self._held: set[Lease] = set()
        self._releasing: set[asyncio.Task[None]] = set()
        self._clock = clock
        self._down_until = float("-inf")
        self._outage_logged = False
        self._redis: Any = None
        if redis_url:
            import redis.asyncio as aioredis

            self._redis = aioredis.Redis.from_url(
                redis_url, socket_timeout=timeout_seconds, socket_connect_timeout=timeout_seconds
            )
            self._acquire = self._redis.register_script(ACQUIRE_SCRIPT)
            self._renew = self._redis.register_script(RENEW_SCRIPT)
        self._renewer = Periodic("socket-leases-renew", self.LEASE_SECONDS / 3, self.renew_once, log)

    def start(self) -> None:
        if self._redis is not None:
            self._renewer.start()

    async def stop(self) -> None:
        await self._renewer.stop()
        for lease in list(self._held):
            self.release(lease)
        if self._releasing:
            await asyncio.wait(list(self._releasing))
        if self._redis is not None:
            await self._redis.aclose()

    def _redis_failed(self, e: Exception) -> None:
        self._down_until = self._clock() + self.RETRY_REDIS_SECONDS
        if not self._outage_logged:
            self._outage_logged = True
            log.warning("socket caps: Redis unavailable (%s); counting this process's sockets until it is back", e)

    async def acquire(self, *scopes: Scope) -> Lease:
        """A place in every scope, or TooManySockets naming the first full one."""
        lease = Lease(uuid.uuid4().hex, scopes, shared=False)
        if self._redis is not None and self._clock() >= self._down_until:
            try:
                full = int(
                    await self._acquire(
                        keys=[self.KEY_PREFIX + s.key for s in scopes],
                        args=[lease.id, int(self.LEASE_SECONDS * 1000), *[s.limit for s in scopes]],
                    )
                )
            except Exception as e:
                self._redis_failed(e)
            else:
                if self._outage_logged:
                    self._outage_logged = False
                    log.warning("socket caps: Redis is back; counts are shared again")
                if full:
                    self._refuse(scopes[full - 1])
                lease.shared = True
                self._held.add(lease)
                return lease
        for scope in scopes:  # synchronous from here: two handshakes cannot both take the last place
            if len(self._local.get(scope.key, ())) >= scope.limit:
                self._refuse(scope)
        for scope in scopes:
            self._local.setdefault(scope.key, set()).add(lease.id)
        self._held.add(lease)
        return lease

    @staticmethod
    def _refuse(scope: Scope) -> None:
        raise TooManySockets(f"at most {scope.limit} concurrent connections {scope.what}")

    def release(self, lease: Lease) -> None:
        """Synchronous, so a handler's ``finally`` frees its place even while it is being cancelled; a Redis lease
        is removed by an owned task (and expires on its own if that fails)."""
        if lease not in self._held:
            return
        self._held.discard(lease)
        if lease.shared:
            task = asyncio.get_running_loop().create_task(self._release_shared(lease), name="socket-lease-release")
            self._releasing.add(task)
            task.add_done_callback(self._releasing.discard)
            return
        for scope in lease.scopes:
            ids = self._local.get(scope.key)
            if ids is not None:
                ids.discard(lease.id)
                if not ids:
                    del self._local[scope.key]

    async def _release_shared(self, lease: Lease) -> None:
        try:
            pipe = self._redis.pipeline(transaction=False)
            for scope in lease.scopes:
                pipe.zrem(self.KEY_PREFIX + scope.key, lease.id)
            await pipe.execute()
        except Exception as e:
            log.warning("socket caps: releasing a lease failed (%s); it expires within %.0f s", e, self.LEASE_SECONDS)

    async def renew_once(self) -> None:
        shared = [lease for lease in self._held if lease.shared]
        if not shared or self._clock() < self._down_until:
            return
        keys: list[str] = []
        index: dict[str, int] = {}
        args: list[Any] = [int(self.LEASE_SECONDS * 1000)]
        for lease in shared:
            for scope in lease.scopes:
                k = self.KEY_PREFIX + scope.key
                if k not in index:
                    keys.append(k)
                    index[k] = len(keys)
                args += [index[k], lease.id]
        try:
            await self._renew(keys=keys, args=args)
        except Exception as e:
            self._redis_failed(e)


class SocketGuard:
    """The open sockets' standing, re-read from the store for all of them every ``interval`` by one owned task."""

    def __init__(self, store: Store, leases: SocketLeases, *, admins: tuple[str, ...], interval: float) -> None:
        self.store = store
        self.leases = leases
        self.admins = frozenset(admins)
        self.watches: set[Watch] = set()
        self.tasks: set[asyncio.Task[Any]] = set()  # sockets' closers: they may outlive their handlers
        self._periodic = Periodic("socket-standing", interval, self.check_all_once, log)

    def start(self) -> None:
        self.leases.start()
        self._periodic.start()

    async def stop(self) -> None:
        await self._periodic.stop()
        for task in list(self.tasks):
            task.cancel()
        if self.tasks:
            await asyncio.wait(list(self.tasks))
        await self.leases.stop()

    def spawn(self, coro: Coroutine[Any, Any, Any], name: str) -> asyncio.Task[Any]:
        task = asyncio.get_running_loop().create_task(coro, name=name)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)
        return task

    async def check(self, holder: Holder) -> Refusal | None:
        return await self.store.read(standing, holder, self.admins)

    def watch(self, holder: Holder) -> Watch:
        w = Watch(holder)
        self.watches.add(w)
        return w

    def unwatch(self, w: Watch) -> None:
        self.watches.discard(w)

    async def check_all_once(self) -> None:
        by_holder: dict[Holder, list[Watch]] = {}
        for w in self.watches:
            by_holder.setdefault(w.holder, []).append(w)
        if not by_holder:
            return
        holders = list(by_holder)

        def read(db: sqlite_utils.Database) -> list[Refusal | None]:
            return [standing(db, h, self.admins) for h in holders]

        for holder, refusal in zip(holders, await self.store.read(read), strict=True):
            if refusal is None:
                continue
            log.info(
                "closing %d socket(s) of %s in tenant %s: %s",
                len(by_holder[holder]),
                holder.credential,
                holder.tenant_id,
                refusal.reason,
            )
            for w in by_holder[holder]:
                w.refuse(refusal)
