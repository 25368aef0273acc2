"""LiveKit webhooks, applied only to the calls of the server that signed them.

The product's LiveKit server and each client's own one (002) post here, each verified with its own key. Whoever holds
a key can sign any event (a tenant holds its client's), and an event names a room, not a server: so a webhook acts
only on the calls that run on a server whose key verifies it (a client's agents' calls on the client's server, the
rest on the product's). A room of another server is acknowledged with nothing changed, because LiveKit retries
anything but a 2xx, and logged."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from core.livekit import Gateways, LiveKitGateway
from core.store import webhooks as repo
from core.store.db import Store

log = logging.getLogger("voxarena.livekit")


async def apply(
    store: Store,
    gateways: Gateways,
    event: dict[str, Any],
    *,
    signer_key: str,
    signed_by: Callable[[LiveKitGateway], bool],
) -> bool:
    """Applies a verified event to the calls it may speak for (`signed_by` the gateway of their server); returns
    False for a delivery already applied."""
    room = event.get("room")
    live = await store.read(repo.live_calls_in_room, room) if room else []
    ours = [row["id"] for row in live if signed_by(await gateways.for_session(row))]
    if len(ours) < len(live):
        log.warning(
            "webhook %s %s signed with LiveKit key %s ignored for %d call(s) in room %s: they run on "
            "another LiveKit server",
            event["event"],
            event["id"],
            signer_key,
            len(live) - len(ours),
            room,
        )
    return await store.write(repo.apply_event, event, ours)
