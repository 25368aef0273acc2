"""What the API's websocket routes share: the upgrade a websocket route requires, and sends that a client who left
misses quietly."""

from __future__ import annotations

import contextlib
from typing import Any

from aiohttp import web

from .errors import BadRequest


def require_websocket(request: web.Request) -> web.WebSocketResponse:
    ws = web.WebSocketResponse(heartbeat=30.0, max_msg_size=64 * 1024)
    if not ws.can_prepare(request).ok:
        raise BadRequest(f"{request.path} is a websocket: send an Upgrade: websocket request")
    return ws


async def send_quietly(ws: web.WebSocketResponse, data: dict[str, Any]) -> None:
    """A client that left mid-reply misses the rest; the reply itself is still recorded."""
    if ws.closed:
        return
    with contextlib.suppress(ConnectionError, RuntimeError):
        await ws.send_json(data)
