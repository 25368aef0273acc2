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
from tests.harness.sip import LiveKitSip, RedisServer, SippFactory, start_livekit_sip, start_redis


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    here = Path(__file__).parent
    for item in items:
        if here in Path(str(item.fspath)).parents:
            item.add_marker(pytest.mark.e2e)
            if "sip" in item.name or "sip" in Path(str(item.fspath)).name:
                item.add_marker(pytest.mark.sip)


@pytest.fixture(scope="session")
def test_ip() -> str:
    """The netns veth address every harness server binds to (VOXARENA_TEST_IP)."""
    try:
        return require_test_netns()
    except RuntimeError as e:
        pytest.fail(str(e), pytrace=False)


@pytest.fixture(scope="session")
def e2e_workdir() -> Iterator[Path]:
    """One temp dir per session for configs and logs (kept if VOXARENA_KEEP_E2E_LOGS=1)."""
    d = Path(tempfile.mkdtemp(prefix="voxarena-e2e-"))
    yield d
    if os.environ.get("VOXARENA_KEEP_E2E_LOGS") != "1":
        import shutil

        shutil.rmtree(d, ignore_errors=True)


@pytest.fixture(scope="session")
def livekit_server(request: pytest.FixtureRequest, test_ip: str, e2e_workdir: Path) -> Iterator[LiveKitServer]:
    """A real livekit-server --dev (no Redis) for the whole session.

    Yields LiveKitServer: .url (ws://IP:port), .http_url, .api_key, .api_secret, .ip, .port, .log_path,
    .token(identity, room, ...), .api() -> livekit.api.LiveKitAPI, .log_tail()."""
    try:
        server = start_livekit_server(workdir=e2e_workdir / "livekit")
    except RuntimeError as e:
        pytest.fail(str(e), pytrace=False)
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def redis_server(request: pytest.FixtureRequest, test_ip: str, e2e_workdir: Path) -> Iterator[RedisServer]:
    """redis-server on the netns IP, random port, no persistence. Yields RedisServer: .address ("ip:port"),
    .ip, .port, .log_path."""
    try:
        redis = start_redis(workdir=e2e_workdir / "redis")
    except RuntimeError as e:
        pytest.fail(str(e), pytrace=False)
    try:
        yield redis
    finally:
        redis.stop()


@pytest.fixture(scope="session")
def livekit_server_redis(request: pytest.FixtureRequest, redis_server: RedisServer,
                         e2e_workdir: Path) -> Iterator[LiveKitServer]:
    """A second livekit-server --dev using `redis_server` (needed for SIP). Same attributes as livekit_server;
    .redis_address is set."""
    try:
        server = start_livekit_server(workdir=e2e_workdir / "livekit-redis", redis_address=redis_server.address)
    except RuntimeError as e:
        pytest.fail(str(e), pytrace=False)
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def livekit_sip(request: pytest.FixtureRequest, livekit_server_redis: LiveKitServer, redis_server: RedisServer,
                e2e_workdir: Path) -> Iterator[LiveKitSip]:
    """livekit-sip bridged to `livekit_server_redis` through `redis_server`.

    Yields LiveKitSip: .ip, .sip_port, .rtp_range (first, last), .health_url, .log_path, .server (the
    LiveKitServer), .log_tail()."""
    try:
        sip = start_livekit_sip(livekit_server_redis, redis_server, workdir=e2e_workdir / "livekit-sip")
    except RuntimeError as e:
        pytest.fail(str(e), pytrace=False)
    try:
        yield sip
    finally:
        sip.stop()


@pytest.fixture
def sipp(request: pytest.FixtureRequest, test_ip: str, tmp_path: Path) -> Iterator[SippFactory]:
    """Factory for sipp callees: `callee = sipp.callee("answer_speech")` starts sipp as a UAS with
    tests/sipp/answer_speech.xml on a free port. All sipp processes are killed at teardown, and their
    logs printed if the test failed."""
    factory = SippFactory(test_ip, tmp_path)
    try:
        yield factory
    finally:
        factory.stop_all()


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
