"""Two API nodes on one PostgreSQL store behave as one product: what one writes the other serves at once (no
per-process cache in between), and each node is registered with its own heartbeat."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from aiohttp.test_utils import TestClient, TestServer

from api.app import create_app
from api.keys import ISSUER
from core.store import cluster as cluster_repo
from core.store.db import Store
from tests.conftest import postgres_only

pytestmark = postgres_only

AGENT = {
    "name": "Front desk",
    "systemPrompt": "p",
    "sttProvider": "deepgram",
    "llmProvider": "gemini",
    "ttsProvider": "elevenlabs",
}


@pytest.fixture
async def second(settings, dns_server) -> AsyncIterator[TestClient]:
    store = Store(settings.database_target)
    app = create_app(settings.with_(node_id="node-two"), store=store, net_lookup=dns_server.lookup)
    async with TestClient(TestServer(app, host="127.0.0.1")) as c:
        yield c
    store.close()


async def test_an_agent_written_on_one_node_is_served_by_the_other_at_once(client, second, token_for):
    h = {"Authorization": f"Bearer {token_for('alice')}"}
    assert second.app[ISSUER] is not None
    names = []
    resp = await client.post("/api/agents", headers=h, json=AGENT)
    assert resp.status == 201, await resp.text()
    agent_id = (await resp.json())["id"]
    for _ in range(3):  # each read right after the other node's write
        listed = await (await second.get("/api/agents", headers=h)).json()
        names.append([a["name"] for a in listed["agents"]])
        new = f"Front desk {len(names)}"
        resp = await second.put(f"/api/agents/{agent_id}", headers=h, json={**AGENT, "name": new})
        assert resp.status == 200, await resp.text()
        listed = await (await client.get("/api/agents", headers=h)).json()
        assert [a["name"] for a in listed["agents"]] == [new]
    assert names == [["Front desk"], ["Front desk 1"], ["Front desk 2"]]


async def test_each_node_registers_and_beats(client, second, store):
    ids = {r["id"] for r in store.read_sync(cluster_repo.listing) if r["stopped_at"] is None}
    assert "node-two" in ids and len(ids) == 2


async def test_a_conversations_turns_on_two_nodes_run_one_after_the_other(settings, store, monkeypatch):
    import asyncio

    from cryptography.fernet import Fernet

    from api.services.chat import ChatService
    from core.cluster import Lease
    from core.netpolicy import NetPolicy
    from core.secrets import SecretBox
    from pipelines.pricing import PriceBook

    refused = 0
    take = Lease.take

    async def counted(self: Lease) -> bool:
        nonlocal refused
        held = await take(self)
        refused += not held
        return held

    monkeypatch.setattr(Lease, "take", counted)

    def node() -> ChatService:
        return ChatService(store, settings, PriceBook.load(), NetPolicy(), SecretBox(Fernet.generate_key()))

    a, b = node(), node()
    order: list[str] = []
    inside = asyncio.Event()
    release = asyncio.Event()

    async def first() -> None:
        async with a.locked("conv-1"):
            order.append("a in")
            inside.set()
            await release.wait()
            order.append("a out")

    async def second_turn() -> None:
        await inside.wait()
        async with b.locked("conv-1"):
            order.append("b in")

    tasks = [asyncio.create_task(first()), asyncio.create_task(second_turn())]
    await asyncio.wait_for(inside.wait(), 10)
    deadline = asyncio.get_running_loop().time() + 10
    while refused < 3:  # b asked for the turn three times and was refused each time
        assert asyncio.get_running_loop().time() < deadline, "b never asked for the turn"
        await asyncio.sleep(0.01)
    assert order == ["a in"]
    release.set()
    await asyncio.wait_for(asyncio.gather(*tasks), 10)
    assert order == ["a in", "a out", "b in"]
