"""Event-loop lateness: how late a periodic wake-up fires. The API, the worker and every call's control traffic
share this loop, so this is the number that says whether anything blocks it."""

from __future__ import annotations

import asyncio
import logging
from collections import deque

from core.periodic import Periodic


class LoopMonitor:
    def __init__(self, *, interval: float = 0.02, window: int = 3000) -> None:
        self.interval = interval
        self.samples: deque[float] = deque(maxlen=window)
        self._last: float | None = None
        self._periodic = Periodic("loop-monitor", interval, self._tick, logging.getLogger("voxarena.api"))

    def start(self) -> None:
        self._periodic.start()

    async def stop(self) -> None:
        await self._periodic.stop()

    async def _tick(self) -> None:
        now = asyncio.get_running_loop().time()
        if self._last is not None:  # how much later than asked this wake-up came
            self.samples.append(max(0.0, now - self._last - self.interval))
        self._last = now

    def reset(self) -> None:
        self.samples.clear()

    def snapshot(self) -> dict[str, float | int]:
        data = sorted(self.samples)
        if not data:
            return {"samples": 0, "lag_p50_ms": 0.0, "lag_p99_ms": 0.0, "lag_max_ms": 0.0}

        def pct(p: float) -> float:
            return round(data[min(len(data) - 1, int(p * len(data)))] * 1000, 3)

        return {
            "samples": len(data),
            "lag_p50_ms": pct(0.50),
            "lag_p99_ms": pct(0.99),
            "lag_max_ms": round(data[-1] * 1000, 3),
        }
