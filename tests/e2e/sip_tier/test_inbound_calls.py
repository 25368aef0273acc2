"""Inbound calls through the whole product and real SIP: a tenant registers a number (the product creates its LiveKit
inbound trunk) and assigns an agent (its dispatch rule); sipp, as the carrier delivering a caller, INVITEs
livekit-sip with that number, and the agent answers, greets, talks, and the call is recorded, metered and analysed.
A registered number no agent is assigned to (never, or released) gets a SIP failure response at once, from its
refusing rule's job; a number not registered at all is dropped by LiveKit."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterator

import pytest
from livekit import api

from tests.harness.audio import speech_ulaw_wav
from tests.harness.procs import HarnessError
from tests.harness.sip import SipStack
from tests.harness.sip_caller import CALLER_NUMBER, SippCaller

GREETING = "Thank you for calling the front desk, how can I help?"


@pytest.fixture
def sip_caller(sip_stack: SipStack) -> Iterator[Callable[..., SippCaller]]:
    """A factory: sip_caller(number, scenario="uac_call.xml", call_ms=..., play=...) starts sipp calling `number`
    at livekit-sip; every caller is stopped when the test ends."""
    started: list[SippCaller] = []

    def start(number: str, scenario: str = "uac_call.xml", **kwargs) -> SippCaller:
        workdir = sip_stack.workdir / f"caller-{len(started) + 1}-{time.monotonic_ns()}"
        try:
            caller = SippCaller(
                scenario,
                ip=sip_stack.callee_ip,
                target=f"{sip_stack.sip.ip}:{sip_stack.sip.sip_port}",
                number=number,
                workdir=workdir,
                **kwargs,
            )
        except RuntimeError as e:
            pytest.fail(f"SIP tier: {e}", pytrace=False)
        started.append(caller)
        return caller

    try:
        yield start
    finally:
        for caller in started:
            caller.stop()


async def _register(product, number: str, agent_id: str | None = None) -> dict:
    status, made = await product.request(
        "POST", "/api/phone-numbers", json={"phone_number": number, "friendly_name": "Front desk"}
    )
    assert status == 201, made
    if agent_id is not None:
        status, assigned = await product.request(
            "POST", f"/api/phone-numbers/{number.replace('+', '%2B')}/assign", json={"agent_id": agent_id}
        )
        assert status == 200, assigned
    return made


async def _inbound_sessions(product, number: str) -> list[dict]:
    status, listed = await product.request("GET", "/api/sessions?direction=inbound&limit=100")
    assert status == 200, listed
    return [s for s in listed["sessions"] if s["to_number"] == number]


async def _wait(check, *, timeout: float, what: str, product):
    deadline = time.monotonic() + timeout
    while True:
        result = await check()
        if result:
            return result
        if time.monotonic() >= deadline:
            raise AssertionError(f"not {what} within {timeout}s\n--- product log ---\n{product.log_tail(120)}")
        await asyncio.sleep(0.2)


async def _refused(stack: SipStack, sip_caller, number: str) -> SippCaller:
    """SIP refused the call: never answered (no 2xx, no media). uac_refused.xml accepts a failure final response or
    none at all: livekit-sip v1.11 with livekit-server v1.13 answers a call that matches no dispatch rule with 100
    and 180 and then drops it, as it does a flood, without a final response."""
    caller = sip_caller(number, "uac_refused.xml", timeout_s=30)
    try:
        rc = await asyncio.to_thread(caller.wait_exit, timeout=40)
    except HarnessError as e:
        raise AssertionError(f"{e}\n{stack.describe()}") from None
    finals = caller.final_responses()
    assert rc == 0 and all(code >= 400 for code in finals), f"{finals}\n{caller.describe()}\n{stack.describe()}"
    assert caller.rtp.snapshot().packets == 0  # no media: the call was never set up
    return caller


async def _refused_by_job(product, stack: SipStack, sip_caller, number: str) -> None:
    """The number's refusing rule dispatched a job that hung up on the caller before livekit-sip answered: a failure
    final response well within the trunk's ring timeout (30 s), never a 2xx, and no session."""
    started = time.monotonic()
    caller = await _refused(stack, sip_caller, number)
    elapsed = time.monotonic() - started
    finals = caller.final_responses()
    assert finals and all(400 <= code < 700 for code in finals), f"{finals}\n{caller.describe()}\n{stack.describe()}"
    assert elapsed < 20, f"refused after {elapsed:.1f}s\n{caller.describe()}"
    refusal = f"from {CALLER_NUMBER} to {number} refused (number_not_assigned)"
    await _wait(lambda: _logged(product, refusal), timeout=10, what="the refusal logged by the job", product=product)
    assert await _inbound_sessions(product, number) == []


async def _logged(product, text: str) -> bool:
    return text in product.log_tail(400)


async def _unroutable(product, stack: SipStack, sip_caller, number: str) -> None:
    """livekit-sip found nothing to route the call to (a number not registered: no trunk, no dispatch rule): no job,
    no session."""
    caller = await _refused(stack, sip_caller, number)
    call_id = caller.call_id()
    rejected = [
        line
        for line in stack.sip.log_text().splitlines()
        if call_id and call_id in line and "Rejecting inbound" in line
    ]
    assert rejected, f"livekit-sip did not log the refusal of {call_id}\n{stack.describe()}"
    assert await _inbound_sessions(product, number) == []


async def test_a_call_to_an_assigned_number_is_answered_by_its_agent_recorded_metered_and_analysed(
    sip_product, sip_stack, sip_caller
):
    product = sip_product
    number = "+15551230001"
    agent_id = await product.create_agent(firstMessage=GREETING)
    made = await _register(product, number, agent_id)
    async with sip_stack.api() as lk:  # the product made the trunk and the rule in LiveKit itself
        trunks = (await lk.sip.list_inbound_trunk(api.ListSIPInboundTrunkRequest())).items
        (trunk,) = [t for t in trunks if t.sip_trunk_id == made["twilio_sid"]]
        assert list(trunk.numbers) == [number]
        rules = (await lk.sip.list_dispatch_rule(api.ListSIPDispatchRuleRequest())).items
        (rule,) = [r for r in rules if list(r.trunk_ids) == [trunk.sip_trunk_id]]
        assert rule.room_config.agents[0].agent_name == "voxarena"

    caller = sip_caller(number, call_ms=16_000, play=speech_ulaw_wav())
    await asyncio.to_thread(caller.wait_received, "200", timeout=30)

    async def live():
        _status, active = await product.request("GET", "/api/calls/active")
        return [c for c in active if c["to_number"] == number]

    (call,) = await _wait(live, timeout=20, what="the call in /api/calls/active", product=product)
    assert (call["from_number"], call["direction"], call["status"], call["agent_id"]) == (
        CALLER_NUMBER,
        "inbound",
        "in-progress",
        agent_id,
    )
    # the agent's greeting reaches the caller as audible RTP (livekit-sip sends silence anyway)
    await asyncio.to_thread(
        caller.rtp.wait_for, lambda s: s.nonsilent_packets >= 50, timeout=30, what="the agent's greeting at the caller"
    )
    session = await product.wait_session(
        call["call_sid"],
        "alice",
        lambda s: any(t["speaker"] == "AGENT" for t in s["transcript"]),
        timeout=30,
        what="the greeting recorded",
    )
    assert session["transcript"][0]["speaker"] == "AGENT" and session["transcript"][0]["content"] == GREETING
    # an inbound call is a phone call: a supervisor's DTMF reaches the caller as RFC 4733 events
    status, sent = await product.request(
        "POST", "/api/override/dtmf", json={"call_sid": call["call_sid"], "digit": "7"}
    )
    assert status == 200, sent
    await asyncio.to_thread(
        caller.rtp.wait_for, lambda s: s.dtmf.endswith("7"), timeout=10, what="DTMF 7 at the caller"
    )

    assert await asyncio.to_thread(caller.wait_exit, timeout=40) == 0, caller.describe()  # it hung up, BYE answered
    session = await product.wait_session(
        call["call_sid"],
        "alice",
        lambda s: s["status"] == "ended" and s["analysisStatus"] == "completed",
        timeout=60,
        what="ended and analysed",
    )
    assert (session["direction"], session["call_direction"], session["from_number"], session["to_number"]) == (
        "inbound",
        "INBOUND",
        CALLER_NUMBER,
        number,
    )
    assert session["agentId"] == agent_id and session["duration"] >= 10 and session["error"] is None
    assert any(t["speaker"] == "USER" for t in session["transcript"])  # the caller was heard too
    status, breakdown = await product.request("GET", f"/api/sessions/{call['call_sid']}/cost-breakdown")
    assert status == 200, breakdown
    (line,) = [e for e in breakdown["events"] if e["event_type"] == "sip_minutes"]
    assert line["provider"] == "sip" and line["model"] == made["twilio_sid"] and line["priced"] is False
    # billed from livekit-sip's answer (once the agent's audio was subscribed) to the hang-up: the session's
    # length, less the ringing before the answer
    assert session["duration"] - 8 <= line["quantity"] * 60 <= session["duration"] + 1
    status, history = await product.request("GET", "/api/calls/history?limit=1000")
    (past,) = [c for c in history["calls"] if c["call_sid"] == call["call_sid"]]
    assert (past["status"], past["from_number"], past["to_number"], past["direction"]) == (
        "completed",
        CALLER_NUMBER,
        number,
        "inbound",
    )


async def test_a_registered_number_no_agent_answers_gets_a_sip_failure_and_an_unregistered_one_is_dropped(
    sip_product, sip_stack, sip_caller
):
    product = sip_product
    registered, unknown = "+15551230002", "+15551230003"
    await _register(product, registered)
    await _refused_by_job(product, sip_stack, sip_caller, registered)
    await _unroutable(product, sip_stack, sip_caller, unknown)  # no trunk: LiveKit's own drop, no final response


async def test_after_release_the_number_gets_a_sip_failure_again(sip_product, sip_stack, sip_caller):
    product = sip_product
    number = "+15551230004"
    made = await _register(product, number, await product.create_agent(firstMessage=GREETING))
    status, released = await product.request("POST", f"/api/phone-numbers/{number}/release")
    assert (status, released["message"]) == (200, "Phone number released successfully"), released
    async with sip_stack.api() as lk:  # the number's one rule is the refusing one again
        rules = (await lk.sip.list_dispatch_rule(api.ListSIPDispatchRuleRequest())).items
        (rule,) = [r for r in rules if list(r.trunk_ids) == [made["twilio_sid"]]]
        assert '"refuse": "number_not_assigned"' in rule.room_config.agents[0].metadata
    await _refused_by_job(product, sip_stack, sip_caller, number)
    status, _ = await product.request("DELETE", f"/api/phone-numbers/{number}")
    assert status == 200
    async with sip_stack.api() as lk:
        trunks = (await lk.sip.list_inbound_trunk(api.ListSIPInboundTrunkRequest())).items
        assert made["twilio_sid"] not in [t.sip_trunk_id for t in trunks]
        rules = (await lk.sip.list_dispatch_rule(api.ListSIPDispatchRuleRequest())).items
        assert rule.sip_dispatch_rule_id not in [r.sip_dispatch_rule_id for r in rules]


async def test_a_call_for_a_disabled_agent_is_refused_by_its_job_with_the_reason_on_the_session(
    sip_product, sip_stack, sip_caller
):
    product = sip_product
    number = "+15551230005"
    agent_id = await product.create_agent(firstMessage=GREETING)
    await _register(product, number, agent_id)
    status, _ = await product.request("PUT", f"/api/agents/{agent_id}", json={"enabled": False})
    assert status == 200
    caller = await _refused(sip_stack, sip_caller, number)  # livekit-sip had not answered: a failure response
    assert caller.final_responses()[:1] == [486], caller.describe()
    (session,) = await _wait(
        lambda: _inbound_sessions(product, number), timeout=10, what="the refused session", product=product
    )
    assert (session["status"], session["endReason"], session["from_number"]) == (
        "ended",
        "agent_disabled",
        CALLER_NUMBER,
    )
    assert f"agent {agent_id} is disabled" in session["error"] and session["transcript"] == []
    assert session["analysisStatus"] == "skipped"
    assert (
        f"inbound call {session['id']} from {CALLER_NUMBER} to {number} refused (agent_disabled)"
        in product.log_tail(400)
    )
