"""Child processes for the harness: log to a file, bounded readiness waits, always killed on stop."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Sequence
from pathlib import Path


class HarnessError(RuntimeError):
    """A harness process failed to start or become ready; the message carries its log tail."""


def log_tail(path: Path | str, lines: int = 60) -> str:
    try:
        text = Path(path).read_text(errors="replace")
    except OSError as e:
        return f"<no log at {path}: {e}>"
    return "\n".join(text.splitlines()[-lines:])


def free_port(ip: str, kind: int = socket.SOCK_STREAM) -> int:
    """A port free on `ip` for `kind` (TCP or UDP). Racy in general, fine inside a private netns."""
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind((ip, 0))
        return s.getsockname()[1]


def distinct_free_ports(ip: str, kinds: list[int]) -> list[int]:
    """One free port per socket kind in `kinds`, all different (sockets are held until all are chosen)."""
    socks: list[socket.socket] = []
    ports: list[int] = []
    try:
        while len(ports) < len(kinds):
            s = socket.socket(socket.AF_INET, kinds[len(ports)])
            socks.append(s)
            s.bind((ip, 0))
            port = s.getsockname()[1]
            if port not in ports:
                ports.append(port)
    finally:
        for s in socks:
            s.close()
    return ports


def free_tcp_udp_port(ip: str, *, attempts: int = 50, lo: int | None = None, hi: int | None = None) -> int:
    """A port number free for both TCP and UDP on `ip` (SIP and some servers use both): one the kernel picks from its
    ephemeral range, or one in [lo, hi) when given."""
    import random

    for _ in range(attempts):
        if lo is not None and hi is not None:
            port = random.randrange(lo, hi)
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as t:
                try:
                    t.bind((ip, port))
                except OSError:
                    continue
        else:
            port = free_port(ip, socket.SOCK_STREAM)
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as u:
            try:
                u.bind((ip, port))
            except OSError:
                continue
        return port
    raise HarnessError(f"no port free for both TCP and UDP on {ip}")


def free_port_range(
    ip: str, count: int, kind: int = socket.SOCK_DGRAM, *, lo: int = 20000, hi: int = 40000, attempts: int = 200
) -> tuple[int, int]:
    """A run of `count` consecutive free ports, returned as (first, last)."""
    import random

    for _ in range(attempts):
        start = random.randrange(lo, hi - count) & ~1  # even: RTP on even ports, RTCP on odd
        socks: list[socket.socket] = []
        try:
            for p in range(start, start + count):
                s = socket.socket(socket.AF_INET, kind)
                socks.append(s)
                s.bind((ip, p))
        except OSError:
            continue
        finally:
            for s in socks:
                s.close()
        return start, start + count - 1
    raise HarnessError(f"no run of {count} free ports on {ip}")


def sipp_ports(ip: str, sip_port: int, *, attempts: int = 50) -> tuple[int, int]:
    """(media port, control port) for a sipp on `sip_port`: sipp binds its audio RTP at the media port and its video
    RTP two above it (RTCP at +1 and +3), so the whole run of four must be free and apart from its SIP port (CI: a
    media port two below the SIP port made sipp exit with "Unable to bind video RTP socket")."""
    for _ in range(attempts):
        first, last = free_port_range(ip, 4)
        control = free_port(ip, socket.SOCK_DGRAM)
        taken = set(range(first, last + 1))
        if sip_port not in taken and control not in taken | {sip_port}:
            return first, control
    raise HarnessError(f"no sipp media ports apart from {sip_port} on {ip}")


class ManagedProcess:
    """A child process in its own process group, stdout+stderr to `log_path`."""

    def __init__(
        self,
        name: str,
        argv: Sequence[str],
        log_path: Path,
        *,
        env: dict[str, str] | None = None,
        cwd: Path | str | None = None,
    ) -> None:
        self.name = name
        self.argv = list(argv)
        self.log_path = Path(log_path)
        self._log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(
            self.argv,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=env,
            cwd=cwd,
            start_new_session=True,
        )

    @property
    def pid(self) -> int:
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc.poll() is None

    def tail(self, lines: int = 60) -> str:
        if not self._log.closed:
            self._log.flush()
        return log_tail(self.log_path, lines)

    def fail(self, why: str, lines: int = 80) -> HarnessError:
        rc = self.proc.poll()
        state = "running" if rc is None else f"exited rc={rc}"
        return HarnessError(
            f"{self.name}: {why} ({state}); command: {' '.join(self.argv)}\n"
            f"--- last {lines} lines of {self.log_path} ---\n{self.tail(lines)}"
        )

    def wait_until(self, check: Callable[[], bool], *, timeout: float, what: str, interval: float = 0.2) -> None:
        """Poll `check` until it returns True; raise with the log tail on timeout or if the process dies."""
        deadline = time.monotonic() + timeout
        while True:
            if not self.alive():
                raise self.fail(f"exited before {what}")
            try:
                if check():
                    return
            except Exception:
                pass
            if time.monotonic() >= deadline:
                raise self.fail(f"not {what} within {timeout:.0f}s")
            time.sleep(interval)

    def wait_exit(self, timeout: float) -> int | None:
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            return None

    def stop(self, timeout: float = 10.0) -> int | None:
        """SIGTERM the process group, then SIGKILL after `timeout`; returns the exit code."""
        if self.proc.poll() is None:
            self._signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self._signal(signal.SIGKILL)
                with contextlib.suppress(subprocess.TimeoutExpired):
                    self.proc.wait(timeout=5)
        if not self._log.closed:
            self._log.close()
        return self.proc.poll()

    def _signal(self, sig: int) -> None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.proc.pid, sig)
