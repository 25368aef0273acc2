"""Rules that moved out of the repositories, tested without a database: what a LiveKit webhook event does to the
calls of its room (core/webhook_events.py) and the concurrent-call limit (core/call_limits.py)."""

from __future__ import annotations

import pytest

from core.call_limits import refuse_beyond_limit
from core.store.errors import LimitError
from core.webhook_events import AGENT_KIND, Effect, effect_of

AT = 1_780_000_000  # LiveKit's created_at, in seconds


@pytest.mark.parametrize(
    ("event", "effect"),
    [
        ({"event": "room_finished", "created_at": AT}, Effect(finish=True, at="2026-05-28T20:26:40.000000Z")),
        ({"event": "participant_joined", "participant_kind": 0}, Effect(caller_joined=True, touch=True)),
        ({"event": "participant_joined", "participant_kind": AGENT_KIND}, Effect(touch=True)),
        ({"event": "participant_left"}, Effect(touch=True)),
        ({"event": "track_published"}, Effect(touch=True)),
        ({"event": "room_started"}, Effect()),
        ({"event": "egress_ended"}, Effect()),
    ],
)
def test_what_a_webhook_event_does_to_the_calls_of_its_room(event, effect):
    assert effect_of(event) == effect


@pytest.mark.parametrize(("limit", "live"), [(None, 1_000), (3, 0), (3, 2)])
def test_a_call_within_the_limit_is_let_through(limit, live):
    refuse_beyond_limit(limit, live)


@pytest.mark.parametrize(("limit", "live"), [(0, 0), (3, 3), (3, 4)])
def test_a_call_beyond_the_limit_is_refused_naming_it(limit, live):
    with pytest.raises(LimitError, match=f"limit of {limit} concurrent calls") as refused:
        refuse_beyond_limit(limit, live)
    assert refused.value.kind == "concurrency_limit"
