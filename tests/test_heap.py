"""The process's start is frozen out of the garbage collector's full collections (core/heap.py), and /health says
how many objects that is and how long the full collections that still run take (api/loopmon.py)."""

from __future__ import annotations

import asyncio
import gc
import os
import re
import sys
import time
from pathlib import Path

import aiohttp
import pytest

from api.loopmon import LoopMonitor
from core import heap
from core.heap import freeze_startup_objects
from tests.harness.procs import ManagedProcess

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def unfrozen(monkeypatch):
    """Whatever a test freezes goes back into the collector's generations after it (this is the test process)."""
    monkeypatch.setattr(heap, "_frozen", 0)
    yield
    gc.unfreeze()


def _tracked(obj: object) -> bool:
    return any(o is obj for o in gc.get_objects())


def test_freezing_takes_the_live_objects_out_of_the_collectors_generations(unfrozen):
    kept = [object()]
    assert _tracked(kept)
    frozen = freeze_startup_objects("test")
    assert frozen == gc.get_freeze_count() == heap.frozen_objects() and frozen > 0
    assert not _tracked(kept)  # a full collection no longer walks it
    made_after = [object()]
    assert _tracked(made_after)  # what comes later is collected as before


async def test_the_monitor_counts_full_collections_and_their_pauses_but_not_the_freezes_own(unfrozen):
    monitor = LoopMonitor()
    monitor.start()
    try:
        gc.collect(1)  # not a full collection
        assert monitor.snapshot()["gc_full_collections"] == 0
        gc.collect()
        gc.collect()
        snap = monitor.snapshot()
        assert snap["gc_full_collections"] == 2 and snap["gc_full_pause_max_ms"] > 0
        freeze_startup_objects("test")
        snap = monitor.snapshot()
        assert snap["gc_full_collections"] == 2
        assert snap["gc_frozen_objects"] == gc.get_freeze_count() > 0
    finally:
        await monitor.stop()
    gc.collect()
    assert monitor.snapshot()["gc_full_collections"] == 2  # stopped: no longer counting


async def test_a_started_api_has_frozen_its_imports_and_says_so_in_health(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("VOXARENA_")}
    env.update(PYTHONPATH=str(ROOT))
    argv = [sys.executable, "-m", "worker", "serve", "--no-worker", "--port", "0", "--data-dir", str(tmp_path / "d")]
    proc = ManagedProcess("voxarena", argv, tmp_path / "serve.log", env=env)
    try:
        deadline = time.monotonic() + 120
        while not (m := re.search(r"listening on http://127\.0\.0\.1:(\d+)", proc.log_path.read_text())):
            assert proc.alive() and time.monotonic() < deadline, proc.tail()
            await asyncio.sleep(0.1)
        async with aiohttp.ClientSession() as http, http.get(f"http://127.0.0.1:{m.group(1)}/health") as resp:
            loop = (await resp.json())["event_loop"]
        # the imports alone (LiveKit, its plugins, google-genai's models, aiohttp) are ~330,000 objects; without
        # the freeze this is 0 and every full collection walks them all
        assert loop["gc_frozen_objects"] > 100_000, loop
        assert re.search(r"started: \d+ objects frozen out of the garbage collector", proc.log_path.read_text())
    finally:
        proc.stop(timeout=30)


async def test_a_new_window_does_not_count_the_wake_up_under_way():
    """The process resets the window once started: the start's own blocks (its collection and freeze, ~200 ms)
    must not become the first sample of the served loop."""
    monitor = LoopMonitor(interval=0.02)
    await monitor._tick()
    time.sleep(0.1)  # noqa: ASYNC251 - the start blocking the loop, on purpose
    monitor.reset()
    await monitor._tick()
    assert list(monitor.samples) == []
    await monitor._tick()
    assert len(monitor.samples) == 1
