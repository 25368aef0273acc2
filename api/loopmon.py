"""Event-loop lateness: how late a periodic wake-up fires. The API, the worker and every call's control traffic
share this loop, so this is the number that says whether anything blocks it."""

from __future__ import annotations

import asyncio
import gc
import logging
import time
from collections import deque
from typing import Any

from core.heap import freezing, frozen_objects
from core.periodic import Periodic


class LoopMonitor:
    def __init__(self, *, interval: float = 0.02, window: int = 3000) -> None:
        self.interval = interval
        self.samples: deque[float] = deque(maxlen=window)
        self._last: float | None = None
        self._periodic = Periodic("loop-monitor", interval, self._tick, logging.getLogger("voxarena.api"))
        # the garbage collector's full collections, whichever thread ran them: each holds the GIL, so the loop too
        self.full_collections = 0
        self.full_pauses: deque[float] = deque(maxlen=100)
        self._full_started: float | None = None

    def start(self) -> None:
        self._periodic.start()
        gc.callbacks.append(self._collector)

    async def stop(self) -> None:
        if self._collector in gc.callbacks:
            gc.callbacks.remove(self._collector)
        await self._periodic.stop()

    def _collector(self, phase: str, info: dict[str, Any]) -> None:
        if info["generation"] != 2 or freezing():
            return
        if phase == "start":
            self._full_started = time.perf_counter()
        elif self._full_started is not None:
            self.full_pauses.append(time.perf_counter() - self._full_started)
            self.full_collections += 1
            self._full_started = None

    async def _tick(self) -> None:
        now = asyncio.get_running_loop().time()
        if self._last is not None:  # how much later than asked this wake-up came
            self.samples.append(max(0.0, now - self._last - self.interval))
        self._last = now

    def reset(self) -> None:
        """A new window: the wake-up under way does not count either (its lateness began before)."""
        self.samples.clear()
        self._last = None

    def snapshot(self) -> dict[str, float | int]:
        """The loop's lateness over the window, and the collector's full collections: how many since start, the
        longest of the last 100, and how many objects are frozen out of them (core/heap.py)."""
        collector = {
            "gc_full_collections": self.full_collections,
            "gc_full_pause_max_ms": round(max(self.full_pauses, default=0.0) * 1000, 3),
            "gc_frozen_objects": frozen_objects(),
        }
        data = sorted(self.samples)
        if not data:
            return {"samples": 0, "lag_p50_ms": 0.0, "lag_p99_ms": 0.0, "lag_max_ms": 0.0, **collector}

        def pct(p: float) -> float:
            return round(data[min(len(data) - 1, int(p * len(data)))] * 1000, 3)

        return {
            "samples": len(data),
            "lag_p50_ms": pct(0.50),
            "lag_p99_ms": pct(0.99),
            "lag_max_ms": round(data[-1] * 1000, 3),
            **collector,
        }
