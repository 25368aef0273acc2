"""The job-start section's probe (`bench/job_start.py`), loaded through `PYTHONPATH` into the product it starts, never
into the product itself: in each process forked from LiveKit's forkserver (the job processes), every event-loop
iteration whose callbacks ran longer than `JOBSTART_MS` is a line of `JOBSTART_OUT/<pid>.jsonl` with its wall time
(first callback's start to last one's end), its thread's CPU time and minor page faults, and its longest callbacks;
with `JOBSTART_PROFILE=1`, also a cProfile of it (which slows the iteration it measures)."""

import os

if os.environ.get("JOBSTART_OUT"):
    import asyncio.base_events as _base_events
    import asyncio.events as _events
    import asyncio.tasks as _tasks
    import cProfile
    import io
    import json
    import pstats
    import resource
    import threading
    import time

    _OUT = os.environ["JOBSTART_OUT"]
    _MS = float(os.environ.get("JOBSTART_MS", "5"))
    _PROFILE = os.environ.get("JOBSTART_PROFILE") == "1"
    _forked = threading.Event()
    _local = threading.local()
    os.register_at_fork(after_in_child=_forked.set)

    def _name(handle) -> str:
        owner = getattr(handle._callback, "__self__", None)
        if isinstance(owner, _tasks.Task):
            return f"task {getattr(owner.get_coro(), '__qualname__', owner.get_coro())}"
        # never repr() the callback (it ran for every callback of the loop): aiohttp's ClientResponse repr reads its
        # `headers`, a reify that caches None before the response has started, and the request then fails
        return getattr(handle._callback, "__qualname__", type(handle._callback).__name__)[:120]

    _run = _events.Handle._run

    def _timed_run(self):
        seen = getattr(_local, "seen", None)
        if seen is None:
            return _run(self)
        t0 = time.perf_counter()
        try:
            return _run(self)
        finally:
            t1 = time.perf_counter()
            seen["first"] = seen["first"] or t0
            seen["last"] = t1
            seen["callbacks"].append((round((t1 - t0) * 1000, 2), _name(self)))

    _run_once = _base_events.BaseEventLoop._run_once

    def _timed_run_once(self):
        if not _forked.is_set():
            return _run_once(self)
        _local.seen = seen = {"first": 0.0, "last": 0.0, "callbacks": []}
        profile = cProfile.Profile() if _PROFILE else None
        cpu, faults = time.thread_time(), resource.getrusage(resource.RUSAGE_THREAD).ru_minflt
        if profile:
            profile.enable()
        try:
            return _run_once(self)
        finally:
            if profile:
                profile.disable()
            _local.seen = None
            wall = (seen["last"] - seen["first"]) * 1000
            if seen["callbacks"] and wall > _MS:
                text = io.StringIO()
                if profile:
                    pstats.Stats(profile, stream=text).sort_stats("cumulative").print_stats(40)
                record = json.dumps(
                    {
                        "at": time.time(),
                        "wall_ms": round(wall, 1),
                        "cpu_ms": round((time.thread_time() - cpu) * 1000, 1),
                        "faults": resource.getrusage(resource.RUSAGE_THREAD).ru_minflt - faults,
                        "callbacks": sorted(seen["callbacks"], reverse=True)[:8],
                        "profile": text.getvalue(),
                    }
                )
                with open(os.path.join(_OUT, f"{os.getpid()}.jsonl"), "a") as f:
                    f.write(record + "\n")

    _events.Handle._run = _timed_run
    _base_events.BaseEventLoop._run_once = _timed_run_once
