"""What runs beside the control API in `voxarena serve`."""

from __future__ import annotations

import asyncio
from typing import Any

from aiohttp import web

from api.routing import Route
from api.settings import Settings
from api.store.db import Store


class Runtime:
    def __init__(self, settings: Settings, store: Store) -> None:
        self.settings = settings
        self.store = store

    def routes(self) -> list[Route]:
        return []

    def attach(self, app: web.Application) -> None:
        self.app = app

    async def health(self) -> dict[str, Any]:
        return {"status": "disabled", "detail": "LiveKit worker not started"}

    async def run_until(self, stop: asyncio.Event) -> int:
        await stop.wait()
        return 0

    async def aclose(self) -> None:
        return None
