"""Who a request acts for: API keys resolved to their tenant, the tenant a user picked with `X-Tenant-ID`
(default: their personal tenant), platform admins, and the tenant's status.

Tenant records (and the absence of a personal tenant's row) and memberships are cached for a few seconds and dropped
at once when this process changes them. An API key found live is remembered for a few seconds on SQLite, where this
process is the only one serving the store, and forgotten as soon as it revokes any key; on PostgreSQL (many nodes)
it is looked up on every request. Either way a revoked key stops working at once.
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from core.settings import Settings
from core.store import accounts, apikeys
from core.store import clients as clients_repo
from core.store import tenants as repo
from core.store.db import Store
from core.store.timefmt import now_iso

from . import ratelimit
from .auth import Principal
from .errors import Forbidden, NotFound, Unauthorized

log = logging.getLogger("voxarena.tenancy")

TENANT_HEADER = "X-Tenant-ID"


@dataclass(frozen=True)
class Tenancy:
    tenant: dict[str, Any]

    @property
    def id(self) -> str:
        return self.tenant["id"]


def refuse_suspended(tenant: dict[str, Any]) -> None:
    if tenant["status"] == "suspended":
        err = Forbidden(f"tenant {tenant['id']} is suspended")
        err.type = "tenant_suspended"
        raise err


class _Ttl:
    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self._items: dict[Any, tuple[Any, float]] = {}

    def get(self, key: Any) -> Any:
        hit = self._items.get(key)
        if hit is not None and time.monotonic() < hit[1]:
            return hit[0]
        return None

    def put(self, key: Any, value: Any) -> None:
        if len(self._items) > 50_000:
            self._items.clear()
        self._items[key] = (value, time.monotonic() + self.seconds)

    def clear(self) -> None:
        self._items.clear()

    def drop(self, match: Callable[[Any], bool]) -> None:
        for key in [k for k in self._items if match(k)]:
            del self._items[key]


class Tenants:
    CACHE_SECONDS = 2.0
    KEY_CACHE_SECONDS = 5.0
    TOUCH_SECONDS = 60.0

    def __init__(self, store: Callable[[], Store], settings: Settings) -> None:
        self._store = store
        self._admins = set(settings.admin_users)
        self._records = _Ttl(self.CACHE_SECONDS)
        self._unstored = _Ttl(self.CACHE_SECONDS)  # personal tenants found not stored (most users')
        self._roles = _Ttl(self.CACHE_SECONDS)
        self._admin_accounts = _Ttl(self.CACHE_SECONDS)
        self._touched: dict[str, float] = {}
        # live API keys by hash, on SQLite only (each lookup is a hop to a reader thread: an API-key request ran at
        # under half a JWT's rate); a read begun before a revocation never stores what it saw (the generation)
        self._keys = None if settings.database_url else _Ttl(self.KEY_CACHE_SECONDS)
        self._key_generation = 0
        self._credential_rps: dict[str, float | None] = {}  # credential sha256 -> its tenant's rate_limit_rps

    # ---- principals ----

    async def verify_key(self, key: str, client_id: str | None) -> Principal:
        if not apikeys.well_formed(key):
            raise Unauthorized("malformed API key")
        store = self._store()
        record = await self._live_key(store, key)
        if record is None:
            raise Unauthorized("unknown or revoked API key")
        if client_id is not None and not await store.read(clients_repo.exists, record["owner_id"], client_id):
            raise Unauthorized(f"X-Client-ID {client_id!r} is not a client of this key's tenant")
        now = time.monotonic()
        if now - self._touched.get(record["id"], float("-inf")) >= self.TOUCH_SECONDS:
            self._touched[record["id"]] = now
            store.submit(apikeys.touch, record["id"], now_iso())  # the writer owns it; nobody waits for it
        return Principal(user_id=f"key:{record['id']}", key_id=record["id"], tenant_id=record["owner_id"])

    async def _live_key(self, store: Store, key: str) -> dict[str, Any] | None:
        if self._keys is None:
            return await store.read(apikeys.resolve, key)
        digest = apikeys.hash_key(key)
        record = self._keys.get(digest)
        if record is None:
            generation = self._key_generation
            record = await store.read(apikeys.resolve, key)
            if record is not None and generation == self._key_generation:
                self._keys.put(digest, record)
        return record

    def keys_revoked(self) -> None:
        """This process revoked a key: no key is taken from memory any more, nor stored by a read begun before."""
        self._key_generation += 1
        if self._keys is not None:
            self._keys.clear()

    async def is_admin(self, principal: Principal) -> bool:
        if principal.key_id is not None:
            return False
        if principal.user_id in self._admins:
            return True
        hit = self._admin_accounts.get(principal.user_id)
        if hit is None:  # a local account created with --admin
            hit = await self._store().read(accounts.is_admin, principal.user_id)
            self._admin_accounts.put(principal.user_id, hit)
        return hit

    # ---- tenants ----

    async def record(self, tenant_id: str) -> dict[str, Any] | None:
        hit = self._records.get(tenant_id)
        if hit is None:
            hit = await self._store().read(repo.find, tenant_id)
            if hit is not None:
                self._records.put(tenant_id, hit)
        return hit

    async def role(self, tenant_id: str, user_id: str) -> str | None:
        if tenant_id == repo.personal_tenant_id(user_id):
            return "owner"
        key = (tenant_id, user_id)
        hit = self._roles.get(key)
        if hit is None:
            hit = await self._store().read(repo.role_of, tenant_id, user_id) or ""
            self._roles.put(key, hit)
        return hit or None

    async def personal(self, user_id: str) -> dict[str, Any]:
        """The user's personal tenant. Until something needs its row (a member added, an admin's change, a read of
        the tenant itself) it is the default one, unstored: a request that is refused writes nothing."""
        tenant_id = repo.personal_tenant_id(user_id)
        if self._unstored.get(tenant_id):  # asked within `CACHE_SECONDS`: no row, no store read for each request
            return repo.unstored_personal(user_id)
        tenant = await self.record(tenant_id)
        if tenant is None:
            self._unstored.put(tenant_id, True)
        return tenant or repo.unstored_personal(user_id)

    def changed(self, tenant_id: str) -> None:
        """This process wrote the tenant or its members: forget what was cached about it."""
        self._records.drop(lambda k: k == tenant_id)
        self._unstored.drop(lambda k: k == tenant_id)
        self._roles.drop(lambda k: k[0] == tenant_id)

    async def resolve(self, request: web.Request, principal: Principal) -> Tenancy:
        """The tenant this request acts in. Someone else's tenant is a 404, like any object of theirs."""
        wanted = request.headers.get(TENANT_HEADER, "").strip() or None
        if principal.key_id is not None:
            assert principal.tenant_id is not None
            if wanted is not None and wanted != principal.tenant_id:
                raise NotFound(f"tenant {wanted} not found")
            tenant = await self.record(principal.tenant_id)
        elif wanted is None:
            tenant = await self.personal(principal.user_id)
        else:
            tenant = await self.record(wanted)
            # a member acts in it; an admin may act in any tenant (asked only when not a member)
            if tenant is None or (
                await self.role(wanted, principal.user_id) is None and not await self.is_admin(principal)
            ):
                raise NotFound(f"tenant {wanted} not found")
        if tenant is None:  # a key whose tenant vanished
            raise Unauthorized("unknown or revoked API key")
        refuse_suspended(tenant)
        self._remember_rate(request, tenant)
        return Tenancy(tenant=tenant)

    def _remember_rate(self, request: web.Request, tenant: dict[str, Any]) -> None:
        cred = ratelimit.credential(request)
        if cred is None:
            return
        if len(self._credential_rps) > 100_000:
            self._credential_rps.clear()
        digest = request.get(ratelimit.CREDENTIAL_SHA256) or hashlib.sha256(cred.encode()).hexdigest()
        self._credential_rps[digest] = tenant["rate_limit_rps"]

    async def rate_override(self, credential_sha256: str) -> float | None:
        """The rate limiter's hook: a credential's tenant's own ``rate_limit_rps``, once a request of that
        credential has resolved its tenant (from memory; the first request runs at the default rate)."""
        return self._credential_rps.get(credential_sha256)
