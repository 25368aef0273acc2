"""Fixtures that start real servers for e2e tests. They only run inside `.ci/netns-run` (see tests/harness/netns.py):
outside it they fail with a message saying how to run, they never skip."""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

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


@contextlib.contextmanager
def own_stack(
    e2e_workdir: Path, fakes, name: str, *, extra: dict[str, str] | None = None, database_url: str = ""
) -> Iterator[tuple[Any, LiveKitServer]]:
    """`voxarena serve` on the provider fakes with a livekit-server of its own, which posts its webhooks to it (one
    worker per server, so dispatch is unambiguous); `extra` settings on top. Yields (product, livekit_server)."""
    from tests.harness.procs import free_port
    from tests.harness.product import product_env, start_product

    port = free_port("127.0.0.1")
    server = _start_or_fail(
        start_livekit_server,
        workdir=e2e_workdir / f"livekit-{name}",
        webhook_urls=[f"http://127.0.0.1:{port}/api/livekit/webhook"],
    )
    env = product_env(
        data_dir=e2e_workdir / f"product-{name}-data",
        port=port,
        livekit=server,
        fakes_urls=fakes.urls,
        api_key=FAKE_KEY,
        database_url=database_url,
        extra=extra,
    )
    try:
        product = _start_or_fail(start_product, workdir=e2e_workdir / f"product-{name}", port=port, env=env)
    except BaseException:
        server.stop()
        raise
    try:
        yield product, server
    finally:
        product.stop()
        server.stop()


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
    args = [
        (f"{name}[{i}]", v)
        for name, value in getattr(item, "funcargs", {}).items()
        for i, v in (enumerate(value) if isinstance(value, tuple) else [("", value)])
    ]
    for name, value in args:
        name = name.removesuffix("[]")
        if id(value) in seen:
            continue
        seen.add(id(value))
        describe = getattr(value, "describe", None) or getattr(value, "log_tail", None)
        if callable(describe):
            try:
                rep.sections.append((f"harness: {name} log tail", describe()))
            except Exception as e:
                rep.sections.append((f"harness: {name} log tail", f"<unavailable: {e}>"))


# --- the product, wired to a real livekit-server and the provider fakes -----------------------------------------

FAKE_KEY = "fake-provider-key"
ANALYSIS_JSON = {
    "summary": "The caller asked for the opening hours and got them.",
    "sentiment": "positive",
    "sentiment_score": 0.8,
    "topics": ["opening hours"],
    "outcome": "answered",
    "action_items": [],
}
VOICE_SCRIPT = {
    "stt_transcripts": [],
    "stt_default_transcript": "What are your opening hours?",
    "llm_default_reply": "We are open from nine to five, every weekday.",
    "llm_default_json": ANALYSIS_JSON,
}


@pytest.fixture(scope="session")
def s3_server(netns_ip: str, e2e_workdir: Path):
    """A real S3-compatible store, SeaweedFS (tests/harness/seaweedfs.py), on loopback for the whole session; a
    missing binary fails the tests that need it with the command that builds it."""
    from tests.harness.seaweedfs import start_seaweedfs

    server = _start_or_fail(start_seaweedfs, e2e_workdir / "seaweedfs")
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def fakes(e2e_workdir: Path):
    """The provider fakes as their own process (tests/harness/fakes_proc.py)."""
    from tests.harness.fakes_proc import start_fakes

    proc = _start_or_fail(start_fakes, e2e_workdir / "fakes", script=VOICE_SCRIPT, api_key=FAKE_KEY)
    try:
        yield proc
    finally:
        proc.stop()


@pytest.fixture(scope="session")
def e2e_database_url(postgres) -> str:
    """The product's database on the PostgreSQL pass (a fresh one, migrated from the template); "" (SQLite in the
    product's data dir) otherwise."""
    return postgres.create_database("voxarena_template") if postgres is not None else ""


@pytest.fixture(scope="session")
def voice_stack(netns_ip: str, e2e_workdir: Path, fakes, e2e_database_url: str):
    """`voxarena serve` (API + worker + job processes) with its own livekit-server, which posts its webhooks to
    the product. Yields (product, livekit_server, fakes)."""
    # agents' HTTP tools reach a business API the tests run on loopback (tests/e2e/test_tools.py)
    extra = {"VOXARENA_OUTBOUND_HTTP_ALLOWED_HOSTS": "127.0.0.1"}
    with own_stack(e2e_workdir, fakes, "voice", extra=extra, database_url=e2e_database_url) as (product, server):
        yield product, server, fakes
