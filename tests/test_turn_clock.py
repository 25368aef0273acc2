"""The per-turn clock: each reply's marks from the caller's last loud frame to the first published frame, in the
order they happened, adding up to voice_to_voice."""

from __future__ import annotations

import numpy as np

from api.schemas.sessions import TurnMetrics
from pipelines.turn_clock import MARKS, TurnClock

LOUD = (np.ones(480, dtype=np.int16) * 8000).tobytes()
QUIET = np.zeros(480, dtype=np.int16).tobytes()


class Ticks:
    t = 0.0

    def __call__(self) -> float:
        return self.t


def _play(steps: list[tuple[str, float]], clock: TurnClock | None = None) -> TurnClock:
    clock = clock or TurnClock(now=Ticks())
    for name, at in steps:
        clock.now.t = at  # type: ignore[attr-defined]
        if name in ("loud", "quiet"):
            clock.input_frame(LOUD if name == "loud" else QUIET)
        elif name in ("final", "eot"):
            (clock.stt_final if name == "final" else clock.end_of_turn)()
        elif name == "llm_request":
            clock.llm_request()
        else:
            clock.mark(name)
    return clock


def _seconds(figures: dict) -> dict[str, float]:
    return {h["mark"]: h["seconds"] for h in figures["hops"]}


def test_the_hops_of_a_reply_add_up_to_voice_to_voice():
    clock = _play(
        [
            ("loud", 1.0),
            ("quiet", 1.02),
            ("final", 1.12),
            ("eot", 1.45),
            ("llm_request", 1.46),
            ("llm_first_token", 1.66),
            ("llm_first_token", 1.7),
            ("tts_first_text", 1.67),
            ("tts_first_audio", 1.83),
            ("published", 1.85),
        ]
    )
    figures = clock.take()
    assert figures["voice_to_voice"] == 0.85 and figures["llm_requests"] == 1
    assert [h["mark"] for h in figures["hops"]] == list(MARKS)
    assert _seconds(figures) == {
        "stt_final": 0.12,
        "end_of_turn": 0.33,
        "llm_request": 0.01,
        "llm_first_token": 0.2,
        "tts_first_text": 0.01,
        "tts_first_audio": 0.16,
        "published": 0.02,
    }  # the second first-token mark changed nothing
    assert abs(sum(h["seconds"] for h in figures["hops"]) - figures["voice_to_voice"]) < 0.001
    assert clock.take() == {}  # once


def test_a_generation_started_before_the_turn_ended_is_timed_in_the_order_it_happened():
    # LiveKit's preemptive generation: the LLM starts on the STT final, the turn is committed later
    clock = _play(
        [
            ("loud", 1.0),
            ("final", 1.1),
            ("llm_request", 1.11),
            ("llm_first_token", 1.3),
            ("eot", 1.4),
            ("tts_first_text", 1.41),
            ("tts_first_audio", 1.5),
            ("published", 1.52),
        ]
    )
    figures = clock.take()
    assert [h["mark"] for h in figures["hops"]] == [
        "stt_final",
        "llm_request",
        "llm_first_token",
        "end_of_turn",
        "tts_first_text",
        "tts_first_audio",
        "published",
    ]
    assert {h["mark"]: h["at"] for h in figures["hops"]}["end_of_turn"] == 0.4
    assert abs(sum(h["seconds"] for h in figures["hops"]) - figures["voice_to_voice"]) < 0.001


def test_stale_generations_the_greeting_and_an_interrupted_reply_leave_nothing_behind():
    clock = _play([("tts_first_text", 0.5), ("tts_first_audio", 0.6), ("published", 0.7)])  # greeting
    assert clock.take() == {}
    # a generation for "I want" goes stale when the caller goes on; the committed reply is interrupted
    _play(
        [
            ("loud", 1.0),
            ("final", 1.1),
            ("llm_request", 1.12),
            ("loud", 1.5),
            ("final", 1.6),
            ("eot", 1.9),
            ("llm_request", 1.91),
        ],
        clock,
    )
    _play(
        [
            ("loud", 2.5),
            ("final", 2.6),
            ("eot", 2.9),
            ("llm_request", 2.91),
            ("llm_first_token", 3.0),
            ("tts_first_text", 3.01),
            ("tts_first_audio", 3.1),
            ("published", 3.12),
        ],
        clock,
    )
    figures = clock.take()
    assert figures["voice_to_voice"] == 0.62 and {h["mark"]: h["at"] for h in figures["hops"]}["llm_request"] == 0.41
    # every request since the last reply went out counts: the stale one, the interrupted one, the one answered
    assert figures["llm_requests"] == 3


def test_voice_to_voice_and_the_hops_are_fields_of_the_stored_turn_metrics():
    assert {"voice_to_voice", "hops", "llm_requests"} <= set(TurnMetrics.model_fields)


def test_speech_ends_where_the_last_loud_10_ms_of_a_frame_ends_not_when_the_frame_arrived():
    # a 50 ms frame at 16 kHz: 20 ms of speech, then 30 ms of silence, handed over at t = 1.0
    frame = np.concatenate([np.full(320, 8000, dtype=np.int16), np.zeros(480, dtype=np.int16)]).tobytes()
    clock = TurnClock(now=Ticks())
    clock.now.t = 1.0  # type: ignore[attr-defined]
    clock.input_frame(frame, 16_000)
    clock.now.t = 1.05  # type: ignore[attr-defined]
    clock.input_frame(np.zeros(800, dtype=np.int16).tobytes(), 16_000)  # silence moves nothing
    clock.end_of_turn()
    clock.mark("published")
    clock.now.t = 1.4  # type: ignore[attr-defined]
    assert clock._done is not None and abs(clock._done["last_loud"] - 0.97) < 1e-9
