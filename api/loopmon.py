"""Event-loop lateness: how late a periodic wake-up fires. The API, the worker and every call's control traffic
share this loop, so this is the number that says whether anything blocks it."""

from __future__ import annotations

import asyncio
from collections import deque


class LoopMonitor:
    def __init__(self, *, interval: float = 0.02, window: int = 3000) -> None:
        self.interval = interval
        self.samples: deque[float] = deque(maxlen=window)
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run(), name="loop-monitor")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            t = loop.time()
            await asyncio.sleep(self.interval)
            self.samples.append(max(0.0, loop.time() - t - self.interval))

    def reset(self) -> None:
        self.samples.clear()

    def snapshot(self) -> dict[str, float | int]:
        data = sorted(self.samples)
        if not data:
            return {"samples": 0, "lag_p50_ms": 0.0, "lag_p99_ms": 0.0, "lag_max_ms": 0.0}

        def pct(p: float) -> float:
            return round(data[min(len(data) - 1, int(p * len(data)))] * 1000, 3)

        return {"samples": len(data), "lag_p50_ms": pct(0.50), "lag_p99_ms": pct(0.99),
                "lag_max_ms": round(data[-1] * 1000, 3)}
