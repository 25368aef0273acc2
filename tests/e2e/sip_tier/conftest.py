"""The SIP tier's fixtures: Redis + livekit-server + livekit-sip for the session, and sipp callees per test.

Like every e2e fixture they run only inside `.ci/netns-run`, and they FAIL (never skip) when a component is
missing: the message names the fix (`.ci/build-livekit.sh sip`, `.ci/install-system.sh`)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.harness.sip import SippCallee, SipStack, start_sip_stack


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    here = Path(__file__).parent
    for item in items:
        if here in Path(str(item.fspath)).parents:
            item.add_marker(pytest.mark.sip)


def _or_fail(start, *args, **kwargs):
    """Turn a harness error (which names the fix, or carries the log tail) into a plain test failure."""
    try:
        return start(*args, **kwargs)
    except RuntimeError as e:
        message = str(e)
    pytest.fail(f"SIP tier: {message}", pytrace=False)


@pytest.fixture(scope="session")
def sip_stack(netns_ip: str, e2e_workdir: Path) -> Iterator[SipStack]:
    """Yields SipStack: .url/.api_key/.api_secret (the SIP-enabled livekit-server), .api() -> LiveKitAPI,
    .trunk_id (an outbound trunk to .callee_address), .start_callee(scenario, ...) -> SippCallee,
    .livekit/.sip/.redis (the processes), .describe() (log tails)."""
    stack = _or_fail(start_sip_stack, e2e_workdir / "sip")
    try:
        yield stack
    finally:
        stack.stop()


@pytest.fixture
def sip_callee(sip_stack: SipStack) -> Iterator[Callable[..., SippCallee]]:
    """A factory: sip_callee("uas_answer.xml", answer_after_ms=500, play=None, timeout_s=60) starts sipp on the
    trunk's address and returns the SippCallee; it is stopped when the test ends."""
    def start(scenario: str, **kwargs) -> SippCallee:
        return _or_fail(sip_stack.start_callee, scenario, **kwargs)

    try:
        yield start
    finally:
        sip_stack.stop_callee()
