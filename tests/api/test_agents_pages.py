"""Agent lists a page at a time (001's page/limit, as on /api/sessions) on both paths, with an exact total; a large
page is serialised off the event loop and written in chunks that give the loop a turn between them."""

from __future__ import annotations

import asyncio
import itertools
import threading

from aiohttp import web

from api.routing import SEND_CHUNK_BYTES
from api.schemas.agents import AGENTS_PAGE_DEFAULT, AGENTS_PAGE_MAX
from api.services import agents as agents_service
from tests.api.seed import seed_agent
from tests.conftest import assert_error


def _seed(store, n: int, **changes) -> list[str]:
    return [seed_agent(store, "alice", name=f"Agent {i}", **changes)["id"] for i in range(n)]


async def test_the_default_page_holds_and_the_total_counts_every_agent(client, auth, store):
    ids = _seed(store, AGENTS_PAGE_DEFAULT + 5)
    _seed(store, 3, status="inactive")
    h = auth("alice")
    first = await (await client.get("/api/agents", headers=h)).json()
    assert len(first["agents"]) == AGENTS_PAGE_DEFAULT and first["total"] == AGENTS_PAGE_DEFAULT + 8
    second = await (await client.get("/api/agents?page=2", headers=h)).json()
    assert len(second["agents"]) == 8 and second["total"] == first["total"]
    seen = [a["id"] for a in first["agents"] + second["agents"]]
    assert len(set(seen)) == len(seen) and set(ids) <= set(seen)  # every agent once, newest first
    assert [a["createdAt"] for a in first["agents"]] == sorted((a["createdAt"] for a in first["agents"]), reverse=True)
    small = await (await client.get("/api/agents?limit=10&page=11", headers=h)).json()
    assert len(small["agents"]) == 8 and small["total"] == AGENTS_PAGE_DEFAULT + 8
    assert (await (await client.get("/api/agents?page=99", headers=h)).json())["agents"] == []
    inactive = await (await client.get("/api/agents?status=inactive&limit=2", headers=h)).json()
    assert len(inactive["agents"]) == 2 and inactive["total"] == 3
    for q in ("limit=0", f"limit={AGENTS_PAGE_MAX + 1}", "page=0", "page=x"):
        await assert_error(await client.get(f"/api/agents?{q}", headers=h), 422, "validation_error")


async def test_v1_lists_the_same_pages_as_a_bare_array(client, auth, store):
    _seed(store, AGENTS_PAGE_DEFAULT + 5)
    h = auth("alice")
    first = await (await client.get("/api/v1/agents", headers=h)).json()
    second = await (await client.get("/api/v1/agents?page=2", headers=h)).json()
    assert len(first) == AGENTS_PAGE_DEFAULT and len(second) == 5
    assert [a["id"] for a in first] == [
        a["id"] for a in (await (await client.get("/api/agents", headers=h)).json())["agents"]
    ]
    assert len(await (await client.get(f"/api/v1/agents?limit={AGENTS_PAGE_MAX}", headers=h)).json()) == 105
    await assert_error(await client.get(f"/api/v1/agents?limit={AGENTS_PAGE_MAX + 1}", headers=h), 422)


async def test_a_large_page_is_serialised_off_the_loop_and_written_in_chunks_between_other_work(
    client, auth, store, monkeypatch
):
    """Bench-free: the rows become JSON on a store thread, never the loop's; the bytes go out in chunks with a loop
    turn between each (a task counting loop turns advances between writes), so other requests, sockets and the loop
    monitor run while a multi-megabyte page is sent."""
    _seed(store, 60, systemPrompt="x" * 40_000)  # in both shapes
    loop_thread = threading.get_ident()
    serialised_on: set[int] = set()
    for name in ("agent_wire", "agent_v1_wire"):
        real = getattr(agents_service, name)

        def recording(row, _real=real):
            serialised_on.add(threading.get_ident())
            return _real(row)

        monkeypatch.setattr(agents_service, name, recording)

    turns = 0
    stop = asyncio.Event()

    async def count_turns() -> None:
        nonlocal turns
        while not stop.is_set():
            turns += 1
            await asyncio.sleep(0)

    writes: list[tuple[int, int]] = []  # (bytes, loop turns so far) per server write
    real_write = web.StreamResponse.write

    async def write(self, data):
        writes.append((len(data), turns))
        return await real_write(self, data)

    monkeypatch.setattr(web.StreamResponse, "write", write)
    counter = asyncio.ensure_future(count_turns())
    try:
        for path in ("/api/agents?limit=60&page=1", "/api/v1/agents?limit=60"):
            writes.clear()
            resp = await client.get(path, headers=auth("alice"))
            body = await resp.json()
            agents = body["agents"] if isinstance(body, dict) else body
            assert resp.status == 200 and len(agents) == 60 and "X-RateLimit-Remaining" in resp.headers
            assert int(resp.headers["Content-Length"]) > 2_000_000
            assert len(writes) >= 8 and max(size for size, _ in writes) <= SEND_CHUNK_BYTES, path
            assert all(b[1] > a[1] for a, b in itertools.pairwise(writes)), "a chunk followed another without a turn"
    finally:
        stop.set()
        await counter
    assert serialised_on and loop_thread not in serialised_on
