"""A business's own API on loopback, as an agent's HTTP tools reach it: it keeps every request it gets (method,
path, query, headers, body) and answers per path.

  POST /book          -> 200 {"booked": true, "slot": <the body's "time">, "reference": "BK-1042"}
  GET  /weather       -> 200 {"city": <?city>, "forecast": "sunny", "celsius": 21}
  ANY  /slow          -> waits `slow_seconds` (a test's deadline is shorter), then 200
  ANY  /fail          -> 503 "upstream down"
  ANY  /big           -> 200 with 20,000 bytes
  ANY  /redirect?to=U -> 302 to U
  POST /context       -> 200 `context_answer` (a pre-call context webhook)
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import time
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web
from aiohttp.test_utils import TestServer


@dataclass
class Seen:
    method: str
    path: str
    query: str  # raw, as sent (percent-encoded)
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


def verify(secret: str, header: str, signed: bytes, *, max_age: float = 300) -> bool:
    """A receiver's check of ``X-Voxarena-Signature`` (core/signing.py)."""
    parts = dict(p.split("=", 1) for p in header.split(","))
    expected = hmac.new(secret.encode(), f"{parts['t']}.".encode() + signed, hashlib.sha256).hexdigest()
    return hmac.compare_digest(expected, parts["v1"]) and abs(time.time() - int(parts["t"])) < max_age


@dataclass
class ToolServer:
    slow_seconds: float = 30.0
    context_answer: dict[str, Any] = field(default_factory=lambda: {"customer_name": "Ada Lovelace", "tier": "gold"})
    seen: list[Seen] = field(default_factory=list)
    server: TestServer | None = None

    async def start(self, host: str = "127.0.0.1") -> ToolServer:
        app = web.Application()
        app.router.add_route("*", "/{name}", self._handle)
        self.server = TestServer(app, host=host)
        await self.server.start_server()
        return self

    async def close(self) -> None:
        if self.server is not None:
            await self.server.close()

    def url(self, path: str) -> str:
        assert self.server is not None
        return str(self.server.make_url(path))

    def on(self, path: str) -> list[Seen]:
        return [s for s in self.seen if s.path == path]

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        body = await request.read()
        self.seen.append(
            Seen(request.method, request.path, request.rel_url.raw_query_string, dict(request.headers), body)
        )
        name = request.match_info["name"]
        if name == "book":
            args = json.loads(body or b"{}")
            return web.json_response({"booked": True, "slot": args.get("time"), "reference": "BK-1042"})
        if name == "weather":
            return web.json_response({"city": request.query.get("city"), "forecast": "sunny", "celsius": 21})
        if name == "slow":
            await asyncio.sleep(self.slow_seconds)
            return web.json_response({"late": True})
        if name == "fail":
            return web.Response(status=503, text="upstream down")
        if name == "big":
            return web.Response(text="x" * 20_000)
        if name == "context":
            return web.json_response(self.context_answer)
        if name == "redirect":
            raise web.HTTPFound(request.query["to"])
        return web.Response(status=404, text="no such tool")
