"""Guard: the harness starts servers only inside the private network namespace made by `.ci/netns-run`."""

from __future__ import annotations

import ipaddress
import os
import socket
import subprocess

RUN_HINT = (
    "run the tests through the namespace wrapper, e.g.\n"
    "    cd /work/main && .ci/netns-run .venv/bin/python -m pytest tests/e2e -v"
)


class NotInTestNetns(RuntimeError):
    """Raised when e2e servers would be started outside the harness's own network namespace."""


def _current_netns_name() -> str | None:
    """Name of the named netns this process is in (`ip netns identify`), or None if unknown."""
    try:
        out = subprocess.run(
            ["ip", "netns", "identify", str(os.getpid())],
            capture_output=True,
            text=True,
            timeout=5,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.stdout.strip() or None


def _address_is_local(ip: str) -> bool:
    """True if `ip` is assigned to an interface here (binding to it succeeds)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        try:
            s.bind((ip, 0))
        except OSError:
            return False
    return True


def require_test_netns() -> str:
    """Return the namespace's test IP (VOXARENA_TEST_IP), or raise NotInTestNetns with a clear reason.

    Checks: VOXARENA_TEST_NETNS and VOXARENA_TEST_IP are set, this process really is in that named
    namespace, the IP is a private, non-loopback IPv4 address, and it is assigned to an interface here.
    """
    ns = os.environ.get("VOXARENA_TEST_NETNS", "")
    ip = os.environ.get("VOXARENA_TEST_IP", "")
    if not ns or not ip:
        raise NotInTestNetns(
            "refusing to start e2e servers: VOXARENA_TEST_NETNS / VOXARENA_TEST_IP are not set, so this is "
            "not the harness's private network namespace; " + RUN_HINT
        )
    current = _current_netns_name()
    if current != ns:
        raise NotInTestNetns(
            f"refusing to start e2e servers: VOXARENA_TEST_NETNS={ns!r} but this process is in netns "
            f"{current!r}; " + RUN_HINT
        )
    try:
        addr = ipaddress.IPv4Address(ip)
    except ValueError as e:
        raise NotInTestNetns(f"refusing to start e2e servers: VOXARENA_TEST_IP={ip!r} is not IPv4") from e
    if addr.is_loopback or not addr.is_private:
        raise NotInTestNetns(
            f"refusing to start e2e servers: VOXARENA_TEST_IP={ip} must be a private non-loopback address "
            "on the namespace's veth"
        )
    if not _address_is_local(ip):
        raise NotInTestNetns(
            f"refusing to start e2e servers: VOXARENA_TEST_IP={ip} is not assigned to any interface in "
            f"netns {ns!r}; " + RUN_HINT
        )
    return ip
