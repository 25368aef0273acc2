"""The parts of a warm transfer (worker/warm_transfer_parts.py, worker/warm_transfer.py) that need no phone line:
how the human is dialled, what they are told, what counts as their spoken answer, the hold tone and their leg's
minutes. The whole flow runs on real lines in tests/e2e/sip_tier/test_warm_transfer_phone.py."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
from livekit import api

from core.netpolicy import AddressRefused, NetPolicy
from worker.warm_transfer import HUMAN_IDENTITY, HumanLeg, WarmTransfer
from worker.warm_transfer_parts import (
    MAX_HEADER_CHARS,
    TONE_LEVEL,
    DialPlan,
    call_summary,
    header_value,
    spoken_answer,
    tone_frames,
)


def test_a_number_is_dialled_through_the_outbound_trunk_and_a_sip_uri_at_its_own_host():
    number = DialPlan.of("tel:+15551111111", trunk_id="ST_line")
    assert (number.call_to, number.trunk_id, number.host) == ("+15551111111", "ST_line", None)
    request = number.request(room_name="r", headers={"X-Voxarena-Summary": "hi"})
    assert request.sip_trunk_id == "ST_line" and not request.HasField("trunk")
    assert dict(request.headers) == {"X-Voxarena-Summary": "hi"}

    desk = DialPlan.of("sip:desk@pbx.example.com:5070;transport=udp", trunk_id="ST_line")
    assert (desk.call_to, desk.trunk_id, desk.host) == ("desk", None, "pbx.example.com:5070")
    request = desk.request(room_name="r")
    assert not request.sip_trunk_id and request.sip_call_to == "desk"
    assert (request.trunk.hostname, request.trunk.transport) == (
        "pbx.example.com:5070",
        api.SIPTransport.SIP_TRANSPORT_UDP,
    )
    tls = DialPlan.of("sips:desk@pbx.example.com", trunk_id="").request()
    assert tls.trunk.transport == api.SIPTransport.SIP_TRANSPORT_TLS


@pytest.mark.parametrize(
    "target, why",
    [
        ("tel:+15551111111", "no outbound SIP trunk"),  # no trunk configured
        ("sip:pbx.example.com", "a user and a host"),
        ("sip:desk@", "a user and a host"),
        ("http://desk@pbx.example.com", "a user and a host"),
        ("sip:desk@pbx.example.com:99999", "no valid host and port"),
    ],
)
def test_a_target_that_cannot_be_dialled_says_why(target, why):
    with pytest.raises(ValueError, match=why):
        DialPlan.of(target, trunk_id="")


async def test_a_sip_uri_is_dialled_only_at_an_address_the_policy_allows_and_at_that_address():
    names = {
        "pbx.example.com": ["93.184.216.34"],
        "inside.example.com": ["10.1.2.3"],
        "v6.example.com": ["2001:4860::8"],
    }
    asked = []

    async def lookup(host: str, port: int) -> list[str]:
        asked.append((host, port))
        return names[host]

    policy = NetPolicy.of((), lookup, setting="VOXARENA_SIP_TRANSFER_ALLOWED_HOSTS")
    # a public name: dialled at the address checked (a later DNS answer cannot send it elsewhere), its port kept
    desk = await DialPlan.of("sip:desk@pbx.example.com:5070", trunk_id="").pinned(policy)
    assert (desk.call_to, desk.host, desk.request().trunk.hostname) == (
        "desk",
        "93.184.216.34:5070",
        "93.184.216.34:5070",
    )
    assert asked == [("pbx.example.com", 5070)]
    assert (await DialPlan.of("sips:d@v6.example.com", trunk_id="").pinned(policy)).host == "[2001:4860::8]"
    assert asked[-1] == ("v6.example.com", 5061)
    # private, loopback, link-local: refused, naming the setting that would allow them
    for target in ("sip:d@inside.example.com", "sip:d@10.0.0.5", "sip:d@169.254.169.254:5060", "sip:d@[::1]"):
        with pytest.raises(AddressRefused, match="VOXARENA_SIP_TRANSFER_ALLOWED_HOSTS"):
            await DialPlan.of(target, trunk_id="").pinned(policy)
    # a host the operator listed passes; a number goes through the operator's trunk, as it is
    listed = NetPolicy.of(("inside.example.com",), lookup)
    assert (await DialPlan.of("sip:d@inside.example.com", trunk_id="").pinned(listed)).host == "10.1.2.3"
    number = DialPlan.of("tel:+15551111111", trunk_id="ST_line")
    assert await number.pinned(policy) is number


def _said(role: str, text: str) -> SimpleNamespace:
    return SimpleNamespace(type="message", role=role, text_content=text)


def test_the_briefing_tells_the_human_why_and_what_the_caller_said_and_how_to_answer():
    items = [
        _said("system", "You are a front desk."),
        _said("assistant", "Hello, how can I help?"),
        _said("user", "I was charged twice for my order"),
        SimpleNamespace(type="function_call", role=None, text_content=None),
        _said("assistant", "Let me get a colleague."),
        _said("user", "Thanks."),
    ]
    spoken, header = call_summary(items, agent_name="Front desk", reason="billing dispute")
    assert spoken.startswith("Hello, this is Front desk with a caller to transfer to you.")
    assert "The reason: billing dispute." in spoken
    assert "The caller said: I was charged twice for my order. Thanks." in spoken
    assert spoken.endswith("Press 1 to take the call, or 2 to decline.")
    assert header == "billing dispute | Thanks."
    spoken, header = call_summary([], agent_name="", reason=None)
    assert "has not said much yet" in spoken and header == "warm transfer"


def test_the_summary_header_is_one_line_of_printable_ascii_and_short():
    value = header_value("Résumé\r\nInjected: header\t" + "x" * 500)
    assert "\r" not in value and "\n" not in value and value.isascii() and value.isprintable()
    assert value.startswith("R?sum? Injected: header x") and len(value) == MAX_HEADER_CHARS


@pytest.mark.parametrize(
    "text, answer",
    [
        ("Yes, put them through.", "accept"),
        ("Yeah sure", "accept"),
        ("No, I'm busy.", "declined"),
        ("I can't right now", None),  # not opening with the answer
        ("Can't, sorry.", "declined"),
        ("What are your opening hours?", None),
        ("Yes I think that the customer should call back tomorrow", None),  # talking, not answering
        ("", None),
    ],
)
def test_a_spoken_answer_is_a_short_yes_or_no(text, answer):
    assert spoken_answer(text) == answer


def test_the_default_hold_audio_is_a_quiet_beep_every_three_seconds():
    frames = tone_frames(24_000)
    assert len(frames) == 150 and all(f.samples_per_channel == 480 and f.sample_rate == 24_000 for f in frames)
    samples = np.concatenate([np.frombuffer(f.data, dtype=np.int16) for f in frames])
    assert 0 < np.abs(samples).max() <= 32767 * TONE_LEVEL
    assert np.abs(samples[: 24_000 * 3 // 10]).max() > 0 and not samples[24_000 // 2 :].any()
    assert tone_frames(24_000) is frames  # made once per rate


def test_the_humans_leg_runs_from_the_answer_to_its_end():
    leg = HumanLeg(key="transfer-1", trunk=None, answered_at=1000.0)
    leg.ended_at = 1012.3456
    leg.end()  # a second end keeps the first
    assert leg.answered_ms == 12_346


async def test_the_humans_hang_up_is_taken_from_their_status_once_and_their_leave_adds_nothing():
    ended: list[str] = []

    def spawn(coro, name):
        coro.close()
        ended.append(name)

    room = SimpleNamespace(name="r")
    job = SimpleNamespace(ctx=SimpleNamespace(room=room), session=None, session_id="s", spawn=spawn)
    transfer = WarmTransfer(job, "sip:human@pbx.example.com")  # type: ignore[arg-type]
    human = SimpleNamespace(identity=HUMAN_IDENTITY)
    transfer.leg = HumanLeg(key="transfer-1", trunk=None, answered_at=1000.0)
    transfer.connected = True

    transfer._on_human_status({"sip.callStatus": "active"}, human)  # type: ignore[arg-type]
    transfer._on_human_status({"sip.callStatus": "hangup"}, SimpleNamespace(identity="caller"))  # type: ignore[arg-type]
    assert ended == [] and transfer.leg.ended_at is None
    transfer._on_human_status({"sip.callStatus": "hangup"}, human)  # type: ignore[arg-type]
    assert ended == ["transfer-end"] and transfer.leg.ended_at is not None
    transfer._on_human_left(human)
    assert ended == ["transfer-end"]
