"""The worker's load is its own: an unrelated CPU hog on the machine leaves it free to take calls; its own busy job
processes, or its call limit, make it full. The load is measured in a fresh process (a stand-in for `voxarena
serve`), so nothing else this test run started counts as its own."""

from __future__ import annotations

import json
import subprocess
import sys

from worker.load import WorkerLoad

HOG = "import time\nend = time.monotonic() + {seconds}\nwhile time.monotonic() < end: pass\n"

MEASURE = """
import json, subprocess, sys, time
from worker.load import WorkerLoad
load = WorkerLoad(max_calls=4, threshold=0.5, active_calls=lambda: 0, cores=1)
child = subprocess.Popen([sys.executable, "-c", {hog!r}]) if {own_hog} else None
end = time.monotonic() + 3.0
load()
while time.monotonic() < end:
    time.sleep(0.25)
    load()
if child is not None:
    child.kill()
    child.wait()
print(json.dumps({{"cpu_share": load.cpu_share, "value": load.value, "why_full": load.why_full()}}))
"""


def _measure(*, own_hog: bool) -> dict:
    code = MEASURE.format(hog=HOG.format(seconds=6), own_hog=own_hog)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_an_unrelated_cpu_hog_does_not_make_the_worker_full() -> None:
    hog = subprocess.Popen([sys.executable, "-c", HOG.format(seconds=8)])  # another program's busy loop
    try:
        result = _measure(own_hog=False)
    finally:
        hog.kill()
        hog.wait(timeout=10)
    assert result["cpu_share"] < 0.25 and result["why_full"] is None, result


def test_its_own_busy_processes_make_it_full() -> None:
    result = _measure(own_hog=True)
    assert result["cpu_share"] > 0.5 and "of 1 cores" in result["why_full"], result


def test_the_call_limit_is_exact() -> None:
    active = [3]
    load = WorkerLoad(max_calls=4, threshold=0.75, active_calls=lambda: active[0], cores=64)
    assert load() < 0.75 and load.why_full() is None
    assert "4 calls running or starting" in (load.why_full(reserved=1) or "")
    active[0] = 4
    assert load() >= 0.75 and "the most this worker takes is 4" in load.why_full()
