"""A process told to stop ends within its drain and a grace whatever its event loop does (worker/server.py's
`arm_exit_watchdog`): a real Python process whose loop is blocked for good exits with code 1, every thread's stack
in its log, the blocking line among them."""

from __future__ import annotations

import subprocess
import sys
import time

BLOCKED = """
import asyncio
from worker.server import arm_exit_watchdog

async def main():
    arm_exit_watchdog(1.0)
    # a loop that never yields: no timeout or signal handler of asyncio can run
    while True: pass

asyncio.run(main())
"""


def test_a_shutdown_whose_loop_is_blocked_ends_with_every_stack_in_the_log():
    started = time.monotonic()
    done = subprocess.run([sys.executable, "-c", BLOCKED], capture_output=True, text=True, timeout=60)
    assert done.returncode == 1, (done.returncode, done.stderr[-2000:])
    assert time.monotonic() - started < 30
    # the stack of the blocked loop's thread, down to the line that blocks it
    assert "Timeout (0:00:01)!" in done.stderr, done.stderr
    assert 'File "<string>", line 8 in main' in done.stderr, done.stderr
