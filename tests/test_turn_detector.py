"""The transcript turn detector: unfinished-sounding turns get a low end-of-turn probability, finished ones a high
one, through the protocol LiveKit's turn handling calls."""

from __future__ import annotations

import pytest
from livekit.agents.language import LanguageCode
from livekit.agents.llm import ChatContext

from pipelines.builder import TurnDefaults, turn_handling, vad_min_silence
from pipelines.turn_detector import THRESHOLD, TranscriptTurnDetector, judge

FINISHED = [
    "What time do you open tomorrow?",
    "I'd like to cancel my subscription.",
    "Yes.",
    "no",
    "Sure, go ahead.",
    "I think so.",
    "My number is five five five, one two three four.",
    "It's B K four four nine.",
    "A B C A",
    "What does it look like?",
    "Where are you calling from?",
    "Yes it is.",
    "I can't log in.",
    "Thank you.",
    "Do you?",
    "Send it today, will you?",
    "I don't know what to do.",
    "We can.",
    "Can I?",
]
UNFINISHED = [
    "I want to change my order and",
    "So my number is",
    "Um, I was wondering if",
    "Can you tell me about the",
    "I would like",
    "I need to talk to",
    "The problem is",
    "and then I",
    "I'm looking for a",
    "uh",
    "Could you send it to my email,",
    "I'm",
    "When will it",
    "How do I",
    "Could you also",
    "It sounds like",
    "Well...",
    "Because",
]


@pytest.mark.parametrize("text", FINISHED)
def test_a_finished_turn_is_likely_over(text):
    assert judge(text).probability > THRESHOLD, judge(text)


@pytest.mark.parametrize("text", UNFINISHED)
def test_an_unfinished_turn_is_unlikely_over(text):
    assert judge(text).probability < THRESHOLD, judge(text)


async def test_the_detector_judges_the_callers_last_words_not_the_agents():
    detector = TranscriptTurnDetector()
    ctx = ChatContext()
    ctx.add_message(role="assistant", content="What is your account number and")
    ctx.add_message(role="user", content="It's four seven two.")
    assert await detector.predict_end_of_turn(ctx) > THRESHOLD
    ctx.add_message(role="assistant", content="Thanks.")
    ctx.add_message(role="user", content="And my other account is")
    assert await detector.predict_end_of_turn(ctx) < THRESHOLD


async def test_other_languages_are_left_to_the_endpointing_delay():
    detector = TranscriptTurnDetector()
    assert await detector.supports_language(None) and await detector.supports_language(LanguageCode("en-US"))
    assert await detector.unlikely_threshold(LanguageCode("en")) == THRESHOLD
    assert not await detector.supports_language(LanguageCode("fr-FR"))
    assert await detector.unlikely_threshold(LanguageCode("fr")) is None


def test_the_default_mode_uses_the_transcript_detector_and_the_vad_ends_speech_by_min_delay():
    from core.settings import Settings

    handling = turn_handling(TurnDefaults(mode=Settings().turn_detection))
    assert isinstance(handling["turn_detection"], TranscriptTurnDetector)
    assert vad_min_silence(0.4) == 0.4 and vad_min_silence(0.0) == 0.2 and vad_min_silence(2.0) == 0.55
