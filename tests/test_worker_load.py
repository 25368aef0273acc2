"""The worker's load is its own: an unrelated CPU hog on the machine leaves it free to take calls; its own busy job
processes, or its call limit, make it full. The load is measured in a fresh process (a stand-in for `voxarena
serve`), so nothing else this test run started counts as its own. On a busy machine a hog gets only part of a core,
so the own-hog test compares the worker's figure with the CPU its child really got, read independently."""

from __future__ import annotations

import json
import subprocess
import sys
import time

import psutil
import pytest

from worker.load import WorkerLoad

HOG = "import time\nend = time.monotonic() + {seconds}\nwhile time.monotonic() < end: pass\n"

MEASURE = """
import json, subprocess, sys, time
import psutil
from worker.load import WorkerLoad
load = WorkerLoad(max_calls=4, threshold=0.5, active_calls=lambda: 0, cores=1)
child = subprocess.Popen([sys.executable, "-c", {hog!r}]) if {own_hog} else None
watched = psutil.Process(child.pid) if child is not None else None
child_cpu = {{}}  # sample instant -> the child's CPU seconds then, read apart from the worker's own accounting

def sample():
    load()
    if watched is not None:
        t = watched.cpu_times()
        child_cpu[load._samples[-1][0]] = t.user + t.system

end = time.monotonic() + 3.0
sample()
while time.monotonic() < end:
    time.sleep(0.25)
    sample()
(first_at, _), (last_at, _) = load._samples[0], load._samples[-1]
child_share = (child_cpu[last_at] - child_cpu[first_at]) / (last_at - first_at) if watched is not None else 0.0
why_full = load.why_full()
load.threshold = child_share / 2  # the share this child really got on this machine, however busy, must count
why_full_at_half = load.why_full()
if child is not None:
    child.kill()
    child.wait()
print(json.dumps({{"cpu_share": load.cpu_share, "value": load.value, "why_full": why_full,
                  "child_share": child_share, "why_full_at_half": why_full_at_half}}))
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
    assert result["child_share"] > 0.05, result  # the hog ran at all
    assert result["cpu_share"] >= 0.9 * result["child_share"], result
    assert "of 1 cores" in result["why_full_at_half"], result


def test_the_call_limit_is_exact() -> None:
    active = [3]
    load = WorkerLoad(max_calls=4, threshold=0.75, active_calls=lambda: active[0], cores=64)
    assert load() < 0.75 and load.why_full() is None
    assert "4 calls running or starting" in (load.why_full(reserved=1) or "")
    active[0] = 4
    assert load() >= 0.75 and "the most this worker takes is 4" in load.why_full()


def test_the_tree_is_read_from_the_threads_children_lists_as_psutil_reads_it() -> None:
    from worker.load import PROC_CHILDREN, proc_tree_cpu_seconds

    assert PROC_CHILDREN  # Linux with /proc/<pid>/task/<tid>/children, as CI and the Dockerfile's image have
    # a child that burns ~0.5 CPU-s, starts a grandchild that burns as much, then both sleep (live, not reaped)
    burn = "import time\nt=time.process_time()\nwhile time.process_time()-t<0.5: pass\n"
    child = subprocess.Popen(
        [
            sys.executable,
            "-c",
            f"import subprocess,sys,time\n{burn}"
            f"g=subprocess.Popen([sys.executable,'-c',{burn + 'time.sleep(30)'!r}])\ntime.sleep(30)",
        ]
    )
    try:
        top = psutil.Process(child.pid)
        deadline = time.monotonic() + 30
        while True:  # both burnt their share
            tree = [top, *top.children(recursive=True)]
            if len(tree) == 2 and all(p.cpu_times().user + p.cpu_times().system >= 0.45 for p in tree):
                break
            assert time.monotonic() < deadline, "the child and grandchild did not run"
            time.sleep(0.1)
        by_psutil = sum(t.user + t.system + t.children_user + t.children_system for t in (p.cpu_times() for p in tree))
        assert by_psutil >= 0.9 and abs(proc_tree_cpu_seconds(child.pid) - by_psutil) < 0.05, by_psutil
    finally:
        for p in psutil.Process(child.pid).children(recursive=True):
            p.kill()
        child.kill()
        child.wait(timeout=10)
    with pytest.raises(OSError):
        proc_tree_cpu_seconds(child.pid)  # a process that is gone is an error: the load falls back to psutil
