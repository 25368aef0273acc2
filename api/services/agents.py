"""Agent writes and the agent list, served from a per-owner cache of its serialised JSON.

``GET /api/agents`` is the dashboard's most frequent read and changes only when one of the owner's agents is
created, updated or deleted. All of those go through this process's store writer (job processes only read agents),
so dropping the owner's entry when such a write finishes keeps the agents exact. The read-only call counters
(``totalCalls``, ``totalMinutes``) change when a call ends, often in a job process, so an entry also expires after
``ttl_seconds``: the counters lag the last call by at most that. A hit is a dict lookup: no
reader-thread hop, no pydantic.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

import sqlite_utils
from pydantic import TypeAdapter

from core.netpolicy import AddressRefused, NetPolicy
from core.secrets import SecretBox, is_masked, mask
from core.store import agents as repo
from core.store.db import Store
from core.store.errors import InvalidValueError

from ..errors import ValidationFailed
from ..schemas.agents import AGENTS_PAGE_DEFAULT, AgentList, AgentV1, agent_v1_wire, agent_wire
from ..schemas.tools import http_urls

_LIST = TypeAdapter(AgentList)
_LIST_V1 = TypeAdapter(list[AgentV1])


class AgentListCache:
    """Serialised agent lists by owner, least recently used first out, within a byte budget.

    A miss takes a ticket before it reads; an invalidation voids the owner's tickets, so a read that began before a
    write (and may have seen the old rows) can never store its result after the write's invalidation. Invalidation
    runs on the store's writer thread, hence the lock."""

    def __init__(
        self, *, max_bytes: int = 32 * 1024 * 1024, max_entry_bytes: int | None = None, ttl_seconds: float = 5.0
    ) -> None:
        self.max_bytes = max_bytes
        self.ttl_seconds = ttl_seconds
        self._expires: dict[str, float] = {}
        self.max_entry_bytes = max_bytes // 4 if max_entry_bytes is None else max_entry_bytes
        self._entries: OrderedDict[str, bytes] = OrderedDict()
        self._bytes = 0
        self._tickets: dict[str, set[object]] = {}
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._entries)

    @property
    def size_bytes(self) -> int:
        return self._bytes

    def get(self, owner: str) -> bytes | None:
        with self._lock:
            payload = self._entries.get(owner)
            if payload is not None:
                if time.monotonic() >= self._expires[owner]:
                    self._drop(owner)
                    return None
                self._entries.move_to_end(owner)
            return payload

    def ticket(self, owner: str) -> object:
        ticket = object()
        with self._lock:
            self._tickets.setdefault(owner, set()).add(ticket)
        return ticket

    def fill(self, owner: str, ticket: object, payload: bytes) -> bool:
        """Store what a miss read, unless a write invalidated the owner since its ticket was taken."""
        with self._lock:
            if not self._spend(owner, ticket):
                return False
            if len(payload) > self.max_entry_bytes:
                return False
            self._drop(owner)
            self._entries[owner] = payload
            self._expires[owner] = time.monotonic() + self.ttl_seconds
            self._bytes += len(payload)
            while self._bytes > self.max_bytes:
                self._drop(next(iter(self._entries)))
            return True

    def abandon(self, owner: str, ticket: object) -> None:
        with self._lock:
            self._spend(owner, ticket)

    def invalidate(self, owner: str) -> None:
        with self._lock:
            self._drop(owner)
            self._tickets.pop(owner, None)

    def _spend(self, owner: str, ticket: object) -> bool:
        tickets = self._tickets.get(owner)
        if tickets is None or ticket not in tickets:
            return False
        tickets.discard(ticket)
        if not tickets:
            del self._tickets[owner]
        return True

    def _drop(self, owner: str) -> None:
        payload = self._entries.pop(owner, None)
        self._expires.pop(owner, None)
        if payload is not None:
            self._bytes -= len(payload)


def list_wire(
    db: sqlite_utils.Database, owner_id: str, *, page: int = 1, limit: int = AGENTS_PAGE_DEFAULT, **filters: Any
) -> dict[str, Any]:
    """One page of the owner's agents (newest first) and how many there are in all."""
    agents = [agent_wire(r) for r in repo.list_(db, owner_id, limit=limit, offset=(page - 1) * limit, **filters)]
    return {"agents": agents, "total": repo.count_listed(db, owner_id, **filters)}


def _list_json(
    db: sqlite_utils.Database, owner_id: str, page: int = 1, limit: int = AGENTS_PAGE_DEFAULT, **filters: Any
) -> bytes:
    # Serialised on the reader thread, exactly as the route table would have serialised the record: a page of
    # large agents costs the event loop nothing but the write.
    return _LIST.dump_json(_LIST.validate_python(list_wire(db, owner_id, page=page, limit=limit, **filters)))


def list_v1_json(db: sqlite_utils.Database, owner_id: str, *, page: int, limit: int, **filters: Any) -> bytes:
    rows = repo.list_(db, owner_id, limit=limit, offset=(page - 1) * limit, **filters)
    return _LIST_V1.dump_json(_LIST_V1.validate_python([agent_v1_wire(r) for r in rows]))


async def list_json(
    store: Store,
    cache: AgentListCache,
    owner_id: str,
    *,
    page: int = 1,
    limit: int = AGENTS_PAGE_DEFAULT,
    **filters: Any,
) -> bytes:
    """The owner's list page, serialised. Only the unfiltered first page of the default size (what the dashboard
    and most clients ask for) is cached; other pages and filtered lists are read each time."""
    if filters or page != 1 or limit != AGENTS_PAGE_DEFAULT:
        return await store.read(lambda db: _list_json(db, owner_id, page, limit, **filters))
    payload = cache.get(owner_id)
    if payload is not None:
        return payload
    ticket = cache.ticket(owner_id)
    try:
        payload = await store.read(_list_json, owner_id)
    except BaseException:
        cache.abandon(owner_id, ticket)
        raise
    cache.fill(owner_id, ticket, payload)
    return payload


async def write(store: Store, cache: AgentListCache, owner_id: str, fn: Callable[..., Any], *args: Any) -> Any:
    """Run an agent write on the store's writer and invalidate the owner's list when it is done.

    The invalidation hangs on the writer's own future, so it runs after the commit even if this caller is cancelled
    while the write is running, and before the caller (whose result is chained after it) sees the result."""
    future = store.submit(fn, owner_id, *args)
    future.add_done_callback(lambda _: cache.invalidate(owner_id))
    return await asyncio.wrap_future(future)


# ---- tools ----


async def check_urls(policy: NetPolicy, data: dict[str, Any]) -> None:
    """Each URL the agent will call (its HTTP tools, its webhooks) must be one the outbound address policy lets the
    product reach (resolved now, and again at each use); a 422 naming the field otherwise."""
    urls = [(f"tools[{i}].url", url) for i, url in http_urls(data.get("tools") or [])]
    urls += [(key, data[key]) for key in ("contextWebhookUrl", "webhookUrl") if data.get(key)]
    for name, url in urls:
        try:
            await policy.check_url(url)
        except AddressRefused as e:
            raise ValidationFailed(f"body {name}: {e}") from None


def seal_tools(
    box: SecretBox, tools: list[dict[str, Any]] | None, stored: list[dict[str, Any]] | None
) -> list[dict[str, Any]] | None:
    """Header values sealed at rest, with the masked form a response shows kept beside them. A masked value sent
    back (what a response showed) keeps the value stored under that tool and header name; one that matches nothing
    stored is refused rather than stored masked."""
    if tools is None:
        return None
    before = {t.get("name"): t.get("headers") or {} for t in stored or () if t.get("type") == "http"}
    out = []
    for i, tool in enumerate(tools):
        headers = tool.get("headers")
        if tool.get("type") != "http" or not headers:
            out.append(tool)
            continue
        sealed = {}
        for name, value in headers.items():
            if is_masked(value):
                kept = before.get(tool["name"], {}).get(name)
                if kept is None:
                    raise InvalidValueError(
                        f"body tools[{i}].headers.{name}: a masked value can only keep the value stored for it"
                    )
                sealed[name] = kept
            else:
                sealed[name] = {"sealed": box.seal(value), "masked": mask(value) or "****"}
        out.append({**tool, "headers": sealed})
    return out


def create_with_tools(box: SecretBox) -> Callable[[sqlite_utils.Database, str, dict[str, Any]], dict[str, Any]]:
    def create(db: sqlite_utils.Database, owner_id: str, data: dict[str, Any]) -> dict[str, Any]:
        if data.get("tools") is not None:
            data = {**data, "tools": seal_tools(box, data["tools"], None)}
        return repo.create(db, owner_id, data)

    return create


def update_with_tools(box: SecretBox) -> Callable[[sqlite_utils.Database, str, str, dict[str, Any]], dict[str, Any]]:
    def update(db: sqlite_utils.Database, owner_id: str, agent_id: str, changes: dict[str, Any]) -> dict[str, Any]:
        if changes.get("tools") is not None:
            stored = repo.get(db, owner_id, agent_id)["config"].get("tools")
            changes = {**changes, "tools": seal_tools(box, changes["tools"], stored)}
        return repo.update(db, owner_id, agent_id, changes)

    return update
