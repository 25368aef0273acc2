"""Real storage conditions for tests: a file the process cannot write (the immutable flag as root, where mode bits
do not bind; the mode bits otherwise)."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest


def make_unwritable(path: Path) -> Callable[[], None]:
    """Make ``path`` unwritable for this process; returns the undo. Skips the test where neither way works."""
    if os.geteuid() == 0:
        done = subprocess.run(["chattr", "+i", str(path)], capture_output=True, text=True)
        if done.returncode != 0:
            pytest.skip(f"chattr +i is refused here ({done.stderr.strip()}), and root ignores mode bits")
        return lambda: subprocess.run(["chattr", "-i", str(path)], check=True)
    mode = path.stat().st_mode
    path.chmod(0o555 if path.is_dir() else 0o444)
    return lambda: path.chmod(mode)


@pytest.fixture
def unwritable() -> Callable[[Path], None]:
    """``unwritable(path)``: unwritable until the test ends (undone even when it fails, so tmp_path can go)."""
    undo: list[Callable[[], None]] = []
    yield lambda path: undo.append(make_unwritable(path))
    for u in reversed(undo):
        u()
