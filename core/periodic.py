"""A periodic background step owned by its creator: started once, cancelled and awaited on stop. A failing step is
logged and tried again next time; it never ends the loop."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from core.store.errors import StorageUnavailable

if TYPE_CHECKING:
    from core.cluster import Lease


class Periodic:
    """``lease``: the step runs only on the node holding it (a sweeper of a cluster runs on one node at a time; the
    lease is renewed at each step and taken over by another node once its holder stops renewing it)."""

    def __init__(
        self,
        name: str,
        interval: float,
        step: Callable[[], Awaitable[Any]],
        log: logging.Logger,
        *,
        lease: Lease | None = None,
    ) -> None:
        self.name = name
        self.interval = interval
        self.step = step
        self.log = log
        self.lease = lease
        self.holding = lease is None
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run(), name=self.name)

    async def stop(self) -> None:
        await cancel_and_wait(self._task)
        self._task = None
        if self.lease is not None and self.holding:
            self.holding = False
            try:
                await self.lease.release()  # another node takes over at once, not when the lease expires
            except Exception as e:
                self.log.warning("%s: could not release its lease: %s", self.name, e)

    async def _holds(self) -> bool:
        if self.lease is None:
            return True
        held = await self.lease.take()
        if held != self.holding:
            self.log.info("%s %s on this node (lease %s)", self.name, "runs" if held else "stops", self.lease.name)
        self.holding = held
        return held

    async def _run(self) -> None:
        storage_failing = False
        me = asyncio.current_task()
        while True:
            try:
                if await self._holds():
                    await self.step()
            except StorageUnavailable as e:
                # The store logs the condition and /health shows it: one line here when it starts, no traceback.
                if not storage_failing:
                    self.log.warning("%s skipped while the storage fails: %s", self.name, e)
                storage_failing = True
            except Exception:
                if me is not None and me.cancelling():
                    raise asyncio.CancelledError from None  # a cancellation the step turned into an error
                self.log.exception("%s failed", self.name)
            else:
                storage_failing = False
            if me is not None and me.cancelling():
                # a cancellation the step swallowed (a library catching it, Python 3.11's wait_for racing its inner
                # future): the loop ends anyway, or `stop` waits for it forever (seen in CI: a test's app shutdown
                # hung on the dispatch watchdog, cancelled and still sleeping between its steps)
                raise asyncio.CancelledError
            await asyncio.sleep(self.interval)


async def cancel_and_wait(task: asyncio.Task[Any] | None) -> None:
    """Cancels an owned background task and waits until it has finished (nothing to do for None). The task's own
    cancellation ends here; the caller's, arriving while it waits, goes on up (suppressing every CancelledError
    swallowed it: a shutdown cancelled there carried on as if nothing had happened). A caller already being
    cancelled when it calls this (its cleanup) goes on with that cleanup."""
    if task is None:
        return
    me = asyncio.current_task()
    before = me.cancelling() if me is not None else 0
    task.cancel()
    try:
        await task
    except asyncio.CancelledError:
        if me is not None and me.cancelling() > before:
            raise
