"""The product's log line of a blocked job loop carries what LiveKit's loop monitor measured about the block (CPU and
GC time), so a block of synchronous work reads apart from one where the loop thread was waiting: the real monitor on
a real loop, blocked once by computation and once by a sleep."""

from __future__ import annotations

import asyncio
import logging
import re
import time

from livekit.agents.telemetry.loop_monitor import EventLoopMonitor

from worker.server import LoopBlockDetail

_DETAIL = re.compile(r"event loop blocked for (\d+)ms.* \[cpu (\d+) ms, gc (\d+) ms")


class _Lines(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.lines: list[str] = []
        self.addFilter(LoopBlockDetail())

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(record.getMessage())


async def _blocked(lines: _Lines, block) -> tuple[int, int]:
    """(block ms, cpu ms) of the first report after `block` ran on the loop."""
    before = len(lines.lines)
    await asyncio.sleep(0.1)  # a few on-time ticks first
    block()
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        for line in lines.lines[before:]:
            if m := _DETAIL.search(line):
                return int(m.group(1)), int(m.group(2))
        await asyncio.sleep(0.02)
    raise AssertionError(f"no report with the detail; lines: {lines.lines[before:]}")


def _compute(cpu_s: float) -> None:
    start = time.thread_time()
    while time.thread_time() - start < cpu_s:
        pass


async def test_a_blocked_loop_is_logged_with_its_cpu_and_gc_time() -> None:
    logger = logging.getLogger("livekit.agents")
    lines = _Lines()
    logger.addHandler(lines)
    level, logger.level = logger.level, logging.WARNING
    monitor = EventLoopMonitor(
        asyncio.get_running_loop(), warn_threshold=0.02, error_threshold=1.0, tick_interval=0.01, emit_spans=False
    )
    monitor.start()
    try:
        blocked, cpu = await _blocked(lines, lambda: _compute(0.12))
        assert blocked >= 100 and cpu >= 100, (blocked, cpu)
        blocked, cpu = await _blocked(lines, lambda: time.sleep(0.12))
        assert blocked >= 100 and cpu < 50, (blocked, cpu)
    finally:
        monitor.stop()
        logger.removeHandler(lines)
        logger.level = level
