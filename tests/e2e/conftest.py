"""Fixtures that start real servers for e2e tests. They only run inside `.ci/netns-run` (see tests/harness/netns.py):
outside it they fail with a message saying how to run, they never skip."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.harness.livekit_server import LiveKitServer, start_livekit_server
from tests.harness.netns import require_test_netns


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    here = Path(__file__).parent
    for item in items:
        if here in Path(str(item.fspath)).parents:
            item.add_marker(pytest.mark.e2e)


def _start_or_fail(start, *args, **kwargs):
    """Run a harness start function; turn its error (which carries the log tail) into a plain test failure."""
    try:
        return start(*args, **kwargs)
    except RuntimeError as e:
        message = str(e)
    pytest.fail(message, pytrace=False)


@pytest.fixture(scope="session")
def netns_ip() -> str:
    """The netns veth address every harness server binds to (VOXARENA_TEST_IP)."""
    return _start_or_fail(require_test_netns)


@pytest.fixture(scope="session")
def e2e_workdir() -> Iterator[Path]:
    """One temp dir per session for configs and logs (kept if VOXARENA_KEEP_E2E_LOGS=1)."""
    d = Path(tempfile.mkdtemp(prefix="voxarena-e2e-"))
    yield d
    if os.environ.get("VOXARENA_KEEP_E2E_LOGS") != "1":
        import shutil

        shutil.rmtree(d, ignore_errors=True)


@pytest.fixture(scope="session")
def livekit_server(netns_ip: str, e2e_workdir: Path) -> Iterator[LiveKitServer]:
    """A real livekit-server --dev (no Redis) for the whole session.

    Yields LiveKitServer: .url (ws://IP:port), .http_url, .api_key, .api_secret, .ip, .port, .log_path,
    .token(identity, room, ...), .api() -> livekit.api.LiveKitAPI, .log_tail()."""
    server = _start_or_fail(start_livekit_server, workdir=e2e_workdir / "livekit")
    try:
        yield server
    finally:
        server.stop()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo):
    """On a failed e2e test, attach the log tails of every harness process it used to its report."""
    outcome = yield
    rep = outcome.get_result()
    if rep.when != "call" or not rep.failed:
        return
    seen: set[int] = set()
    for name, value in getattr(item, "funcargs", {}).items():
        if id(value) in seen:
            continue
        seen.add(id(value))
        describe = getattr(value, "describe", None) or getattr(value, "log_tail", None)
        if callable(describe):
            try:
                rep.sections.append((f"harness: {name} log tail", describe()))
            except Exception as e:  # noqa: BLE001
                rep.sections.append((f"harness: {name} log tail", f"<unavailable: {e}>"))
