"""The worker's load as LiveKit sees it: this worker's own capacity, never the machine's.

LiveKit's default load is the whole machine's CPU, so an unrelated busy process marks the worker full and calls are
refused with "no servers available". Here the load is the larger of
- the calls it runs against `VOXARENA_MAX_CONCURRENT_CALLS` (scaled so that the last allowed call reaches the load
  threshold exactly: one call more is refused), and
- the CPU used by this process and its descendants (the job processes) over the last few seconds, as a share of the
  cores this process may use.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
import time
from collections import deque
from collections.abc import Callable
from pathlib import Path

import psutil
from livekit.agents.utils.hw import get_cpu_monitor

log = logging.getLogger("voxarena.worker")

WINDOW_SECONDS = 2.5  # averaged like LiveKit's default, so one busy moment does not refuse calls


TICK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
# Linux lists each thread's children in /proc (CONFIG_PROC_CHILDREN); psutil finds children by reading the stat file
# of every process on the machine, twice a second (1.27 ms a read on the bench machine, 0.18 through /proc)
PROC_CHILDREN = Path(f"/proc/{os.getpid()}/task/{threading.get_native_id()}/children").exists()


def proc_tree_cpu_seconds(pid: int) -> float:
    """utime + stime + cutime + cstime of `pid` and its descendants, found through /proc/<pid>/task/*/children.
    OSError when `pid` itself is gone; a descendant that exits meanwhile is skipped."""
    ticks, frontier, first = 0, [pid], True
    while frontier:
        p = frontier.pop()
        try:
            fields = Path(f"/proc/{p}/stat").read_bytes().rsplit(b")", 1)[1].split()
            kids = [
                int(k)
                for task in os.listdir(f"/proc/{p}/task")
                for k in _read(f"/proc/{p}/task/{task}/children").split()
            ]
        except OSError:
            if first:
                raise
            continue
        first = False
        ticks += sum(int(f) for f in fields[11:15])
        frontier += kids
    return ticks / TICK


def _read(path: str) -> bytes:
    try:
        return Path(path).read_bytes()
    except OSError:  # a thread that ended between the listing and the read
        return b""


def effective_max_calls(configured: int) -> int:
    """`0` means two calls per core the process may use."""
    if configured > 0:
        return configured
    return max(1, int(2 * get_cpu_monitor().cpu_count()))


class WorkerLoad:
    def __init__(
        self, *, max_calls: int, threshold: float, active_calls: Callable[[], int], cores: float | None = None
    ) -> None:
        self.max_calls = max_calls
        self.threshold = threshold
        self.active_calls = active_calls
        self.cores = cores or get_cpu_monitor().cpu_count()
        self._me = psutil.Process(os.getpid())
        self._samples: deque[tuple[float, float]] = deque()
        self._lock = threading.Lock()
        self.cpu_share = 0.0
        self.calls_share = 0.0
        self.value = 0.0

    def _tree_cpu_seconds(self) -> float:
        """CPU seconds used so far by this process and its live descendants (reaped ones count in `children_*`)."""
        if PROC_CHILDREN:
            with contextlib.suppress(OSError):
                return proc_tree_cpu_seconds(self._me.pid)
        total = 0.0
        for proc in [self._me, *self._me.children(recursive=True)]:
            try:
                t = proc.cpu_times()
            except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
                continue
            total += t.user + t.system + t.children_user + t.children_system
        return total

    def __call__(self, *_: object) -> float:
        """LiveKit calls this every 0.5 s on a thread (and before answering a job request)."""
        with self._lock:
            now, used = time.monotonic(), self._tree_cpu_seconds()
            self._samples.append((now, used))
            while len(self._samples) > 2 and now - self._samples[0][0] > WINDOW_SECONDS:
                self._samples.popleft()
            first_at, first_used = self._samples[0]
            span = now - first_at
            # A job process that exits takes its unreaped seconds with it: never let the share go negative.
            self.cpu_share = max(0.0, used - first_used) / (span * self.cores) if span > 0 else 0.0
            self.calls_share = self.threshold * self.active_calls() / self.max_calls
            self.value = min(1.0, max(self.cpu_share, self.calls_share))
            return self.value

    def why_full(self, reserved: int = 0) -> str | None:
        """Why one more call cannot be taken now (None: it can). `reserved`: calls dispatched, not yet started."""
        calls = self.active_calls() + reserved
        if calls >= self.max_calls:
            return f"{calls} calls running or starting, the most this worker takes is {self.max_calls}"
        if self.cpu_share >= self.threshold:
            return (
                f"this worker's processes use {self.cpu_share:.0%} of {self.cores:g} cores (limit {self.threshold:.0%})"
            )
        return None
