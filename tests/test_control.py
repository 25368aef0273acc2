"""The API -> job command contract (core/control.py): every command the API builds parses back to itself in the
job, in the documented wire form, and anything else on the topic is refused with a reason."""

from __future__ import annotations

import json

import pytest

from core.control import BadControl, ControlMessage, Say, SendDtmf, Transfer, UpdateContext

EVERY_COMMAND = [
    (
        UpdateContext({"customer": "Ada", "order": {"id": 12}}),
        {"type": "context", "context": {"customer": "Ada", "order": {"id": 12}}},
    ),
    (Say("Please hold."), {"type": "say", "text": "Please hold."}),
    (SendDtmf("#"), {"type": "dtmf", "digit": "#"}),
    (Transfer("tel:+15551111111"), {"type": "transfer", "target": "tel:+15551111111", "mode": "cold"}),
    (
        Transfer("sip:desk@pbx.example.com", mode="warm"),
        {"type": "transfer", "target": "sip:desk@pbx.example.com", "mode": "warm"},
    ),
]


@pytest.mark.parametrize("message, wire", EVERY_COMMAND, ids=lambda v: getattr(v, "type", None))
def test_every_command_round_trips_in_its_wire_form(message, wire):
    assert json.loads(message.encode()) == wire
    assert ControlMessage.parse(message.encode()) == message
    assert ControlMessage.parse(json.dumps(wire)) == message  # what an older API process sends parses the same


def test_the_round_trip_covers_every_kind():
    assert {type(m) for m, _ in EVERY_COMMAND} == set(ControlMessage.__subclasses__())


@pytest.mark.parametrize(
    "raw, why",
    [
        (b"not json", "not JSON"),
        (b'["say"]', "not an object"),
        (b'{"text": "hi"}', "unknown or missing type"),
        (b'{"type": "hang_up"}', "unknown or missing type"),
        (b'{"type": "say"}', "say"),  # a field missing
        (b'{"type": "say", "text": "hi", "voice": "x"}', "say"),  # a field it does not know
        (b'{"type": "say", "text": "   "}', "no text"),
        (b'{"type": "dtmf", "digit": "12"}', "not one of"),
        (b'{"type": "transfer", "target": "http://example.com"}', "not a sip:"),
        (b'{"type": "transfer", "target": "tel:+15551111111", "mode": "hot"}', "not one of cold, warm"),
        (b'{"type": "context", "context": "a string"}', "not an object"),
    ],
)
def test_anything_else_on_the_topic_is_refused_with_a_reason(raw, why):
    with pytest.raises(BadControl, match=why):
        ControlMessage.parse(raw)


def test_a_transfer_from_an_api_that_knows_no_modes_is_cold():
    assert ControlMessage.parse(b'{"type": "transfer", "target": "tel:+15551111111"}') == Transfer("tel:+15551111111")
