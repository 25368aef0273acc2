"""A periodic background step owned by its creator: started once, cancelled and awaited on stop. A failing step is
logged and tried again next time; it never ends the loop."""

from __future__ import annotations

import asyncio
import logging
from typing import Any, Awaitable, Callable


class Periodic:
    def __init__(self, name: str, interval: float, step: Callable[[], Awaitable[Any]], log: logging.Logger) -> None:
        self.name = name
        self.interval = interval
        self.step = step
        self.log = log
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run(), name=self.name)

    async def stop(self) -> None:
        await cancel_and_wait(self._task)
        self._task = None

    async def _run(self) -> None:
        while True:
            try:
                await self.step()
            except Exception:
                self.log.exception("%s failed", self.name)
            await asyncio.sleep(self.interval)


async def cancel_and_wait(task: asyncio.Task[Any] | None) -> None:
    """Cancels an owned background task and waits until it has finished (nothing to do for None)."""
    if task is None:
        return
    task.cancel()
    try:
        await task
    except asyncio.CancelledError:
        pass
