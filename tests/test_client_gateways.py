"""The per-client LiveKit gateways when lookups of a client's settings overlap a change of them."""

from __future__ import annotations

import asyncio

from core.dispatch_meta import DispatchSigner
from core.livekit import Gateways, LiveKitGateway
from tests.harness.sip import eventually


def _settings(secret: str) -> dict[str, str]:
    return {"server_url": "ws://127.0.0.1:7880", "api_key": "client-key", "api_secret": secret}


class _SlowStore:
    """The client's settings as of when a lookup began, answered when the test releases that lookup."""

    def __init__(self) -> None:
        self.secret = "v1"
        self.pending: list[asyncio.Event] = []

    async def __call__(self, owner_id: str, client_id: str) -> dict[str, str]:
        seen = _settings(self.secret)
        release = asyncio.Event()
        self.pending.append(release)
        await release.wait()
        return seen


def _default() -> LiveKitGateway:
    """The product's own server, which a client without LiveKit settings of its own uses."""
    return LiveKitGateway("ws://127.0.0.1:1", "key", "secret", agent_name="a", signer=DispatchSigner(b"k" * 32))


async def _drain(gateways: Gateways) -> None:
    while gateways._closing:
        await asyncio.gather(*gateways._closing)


async def test_a_lookup_that_answers_after_a_newer_one_does_not_close_the_newer_ones_gateway():
    """Before: the dispatch watchdog's lookup, begun before a secret change and answered after the token route's,
    put the old secret back and closed the gateway the token route was sending on ('Connector is closed')."""
    store = _SlowStore()
    gateways = Gateways(_default(), store)
    try:
        stale = asyncio.create_task(gateways.for_client("alice", "c1"))  # reads v1
        await eventually(lambda: len(store.pending) == 1, timeout=5, what="lookup 1 begun")
        store.secret = "v2"
        fresh = asyncio.create_task(gateways.for_client("alice", "c1"))  # reads v2
        await eventually(lambda: len(store.pending) == 2, timeout=5, what="lookup 2 begun")
        store.pending[1].set()
        in_use = await fresh
        assert in_use.api_secret == "v2"
        session = in_use.client._session  # the newer request's HTTP session, open
        store.pending[0].set()
        assert await stale is in_use  # the newest settings known, not the ones this lookup read
        await _drain(gateways)
        assert session is not None and not session.closed
        assert gateways.open_client_gateways == 1

        store.secret = "v3"  # a later change still replaces (and closes) the gateway of v2
        later = asyncio.create_task(gateways.for_client("alice", "c1"))
        await eventually(lambda: len(store.pending) == 3, timeout=5, what="lookup 3 begun")
        store.pending[2].set()
        assert (await later).api_secret == "v3"
        await _drain(gateways)
        assert session.closed
        assert gateways.open_client_gateways == 1
    finally:
        await gateways.aclose()


async def test_a_client_whose_livekit_settings_are_removed_goes_back_to_the_products_server():
    secret: str | None = "v1"

    async def lookup(owner_id: str, client_id: str):
        return None if secret is None else _settings(secret)

    default = _default()
    gateways = Gateways(default, lookup)
    try:
        assert (await gateways.for_client("alice", "c1")).api_secret == "v1"
        secret = None
        assert await gateways.for_client("alice", "c1") is default
        await _drain(gateways)
        assert gateways.open_client_gateways == 0
    finally:
        await gateways.aclose()
