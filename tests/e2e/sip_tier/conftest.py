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
    """A factory: sip_callee("uas_answer.xml", answer_after_ms=500, play=None, timeout_s=60, calls=1,
    stream=None) starts sipp on the trunk's address and returns the SippCallee; it is stopped when the test ends.
    `calls=None` serves many calls at once (e.g. uas_by_number.xml, each number its own callee)."""

    def start(scenario: str, **kwargs) -> SippCallee:
        return _or_fail(sip_stack.start_callee, scenario, **kwargs)

    try:
        yield start
    finally:
        # the calls the test left up end while their callee runs, never at the next test's callee (same address)
        closed = sip_stack.hang_up_all()
        if closed:
            print(f"sip_callee: closed rooms the test left with a phone line in them: {closed}")
        sip_stack.stop_callee()


@pytest.fixture
def sip_peer(sip_stack: SipStack) -> Iterator[Callable[..., SippCallee]]:
    """A factory: sip_peer("uas_answer_dtmf.xml", answer_after_ms=500, play=None, timeout_s=60) starts sipp on an
    address of its own (`.address`, dialled as sip:<user>@<address>), beside the trunk's callee; stopped when the
    test ends."""

    def start(scenario: str, **kwargs) -> SippCallee:
        return _or_fail(sip_stack.start_peer, scenario, **kwargs)

    try:
        yield start
    finally:
        sip_stack.stop_peers()


@pytest.fixture(scope="session")
def sip_product(sip_stack: SipStack, e2e_workdir: Path, fakes):
    """`voxarena serve` (API + worker) on the SIP stack's livekit-server, dialling through its outbound trunk, with
    the provider fakes. Yields the Product."""
    from tests.e2e.conftest import FAKE_KEY
    from tests.harness.procs import free_port
    from tests.harness.product import product_env, start_product

    port = free_port("127.0.0.1")
    env = product_env(
        data_dir=e2e_workdir / "sip-product-data",
        port=port,
        livekit=sip_stack.livekit,
        fakes_urls=fakes.urls,
        api_key=FAKE_KEY,
        extra={
            "VOXARENA_SIP_OUTBOUND_TRUNK_ID": sip_stack.trunk_id,
            # warm transfers dial the human (a second sipp) by SIP URI on the test network's private address
            "VOXARENA_SIP_TRANSFER_ALLOWED_HOSTS": sip_stack.callee_ip,
            "VOXARENA_SIP_RING_TIMEOUT_SECONDS": "3",
            "VOXARENA_WARM_TRANSFER_RING_SECONDS": "4",
            "VOXARENA_CALLBACK_ALLOWED_HOSTS": "127.0.0.1",
            "VOXARENA_CALLBACK_BACKOFF_SECONDS": "0.1",
        },
    )
    product = _or_fail(start_product, workdir=e2e_workdir / "sip-product", port=port, env=env)
    try:
        yield product
    finally:
        product.stop()
