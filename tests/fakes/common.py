"""Small helpers shared by the provider fakes: websocket bookkeeping and failure injection."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from typing import Any

from aiohttp import web

from .state import FakeState

STATE_KEY = web.AppKey("fake_state", FakeState)
SOCKETS_KEY = web.AppKey("fake_sockets", set[web.WebSocketResponse])
STOPPING_KEY = web.AppKey("fake_stopping", asyncio.Event)
# URLs of fakes served outside the aiohttp app (the Google TTS gRPC server), for `/_fake/urls`.
EXTRA_URLS_KEY = web.AppKey("fake_extra_urls", dict[str, str])


def state_of(request: web.Request) -> FakeState:
    return request.app[STATE_KEY]


def json_response(status: int, body: Any, headers: dict[str, str] | None = None) -> web.Response:
    return web.Response(status=status, text=json.dumps(body), content_type="application/json", headers=headers)


async def hang(request: web.Request) -> None:
    """Stall like a wedged provider, until the fake shuts down (never longer)."""
    await request.app[STOPPING_KEY].wait()


@contextlib.asynccontextmanager
async def accepted_ws(request: web.Request, *, heartbeat: float | None = None) -> AsyncIterator[web.WebSocketResponse]:
    """Upgrade the request and keep the socket registered so shutdown can close it."""
    ws = web.WebSocketResponse(heartbeat=heartbeat, max_msg_size=16 * 1024 * 1024)
    await ws.prepare(request)
    sockets = request.app[SOCKETS_KEY]
    sockets.add(ws)
    try:
        yield ws
    finally:
        sockets.discard(ws)
        if not ws.closed:
            await ws.close()


async def drop(ws: web.WebSocketResponse) -> None:
    """Injected 'drop' failure: the provider dies mid-session (1011 = internal error)."""
    await ws.close(code=1011, message=b"fake provider failure")


async def read_until_stopped(request: web.Request, ws: web.WebSocketResponse) -> None:
    """Injected 'hang' failure on a socket: swallow input, never answer."""
    stopping = request.app[STOPPING_KEY]
    reader = asyncio.ensure_future(_drain(ws))
    waiter = asyncio.ensure_future(stopping.wait())
    await asyncio.wait({reader, waiter}, return_when=asyncio.FIRST_COMPLETED)
    for task in (reader, waiter):
        task.cancel()


async def _drain(ws: web.WebSocketResponse) -> None:
    async for _ in ws:
        pass


def count_llm_completion(state: FakeState, provider: str, prompt: int, completion: int) -> None:
    """An LLM fake's counters for one completed answer (the tokens it reported in its usage)."""
    state.add(provider, "completed")
    state.add(provider, "prompt_tokens", prompt)
    state.add(provider, "completion_tokens", completion)
    state.add(provider, "total_tokens", prompt + completion)
