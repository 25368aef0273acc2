"""The worker's load is its own: an unrelated CPU hog on the machine leaves it free to take calls; its own busy job
processes, or its call limit, make it full."""

from __future__ import annotations

import subprocess
import sys
import time

from worker.load import WorkerLoad

HOG = "import time\nend = time.monotonic() + {seconds}\nwhile time.monotonic() < end: pass\n"


def _sample(load: WorkerLoad, seconds: float) -> float:
    """The load after `seconds` of sampling every 0.25 s, as LiveKit polls it."""
    end = time.monotonic() + seconds
    value = load()
    while time.monotonic() < end:
        time.sleep(0.25)
        value = load()
    return value


def _hog(seconds: float, *, ours: bool) -> subprocess.Popen:
    """A busy loop for `seconds`: our own child (like a job process), or another program's (started detached
    through a shell that exits at once, so it is nobody's child of ours)."""
    code = HOG.format(seconds=seconds)
    if ours:
        return subprocess.Popen([sys.executable, "-c", code])
    return subprocess.Popen(["sh", "-c", f'"{sys.executable}" -c "$0" &', code])


def test_an_unrelated_cpu_hog_does_not_make_the_worker_full() -> None:
    load = WorkerLoad(max_calls=4, threshold=0.5, active_calls=lambda: 0, cores=1)
    _hog(6, ours=False).wait(timeout=10)
    value = _sample(load, 3.0)
    assert load.cpu_share < 0.2, load.cpu_share
    assert value < 0.5 and load.why_full() is None


def test_its_own_busy_processes_make_it_full() -> None:
    load = WorkerLoad(max_calls=4, threshold=0.5, active_calls=lambda: 0, cores=1)
    hog = _hog(6, ours=True)
    try:
        _sample(load, 3.0)
        assert load.cpu_share > 0.5, load.cpu_share
        assert "of 1 cores" in (load.why_full() or "")
    finally:
        hog.kill()
        hog.wait(timeout=10)


def test_the_call_limit_is_exact() -> None:
    active = [3]
    load = WorkerLoad(max_calls=4, threshold=0.75, active_calls=lambda: active[0], cores=64)
    assert load() < 0.75 and load.why_full() is None
    assert "2 calls" not in (load.why_full(reserved=1) or "") and load.why_full(reserved=1) is not None
    active[0] = 4
    assert load() >= 0.75 and "the most this worker takes is 4" in load.why_full()
