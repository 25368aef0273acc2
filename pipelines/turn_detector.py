"""End of turn from what the caller said: a transcript-based detector for LiveKit's turn handling.

LiveKit 1.8's local end-of-turn model (`turn-detector-v1-mini`) listens to the last 1.2 s of audio only. Measured on
espeak-ng speech it scores complete and unfinished utterances alike (0.12-0.36 against its English threshold of
0.36), so most complete turns wait the whole `max_delay`. The words tell the two apart far better: a turn that ends
on "and", "um", "to", "the" or "my number is" is not finished, whatever the voice does. This detector reads the
caller's transcript of the current turn and answers LiveKit's `predict_end_of_turn` with a low probability for such
endings (the session then waits up to `max_delay` for more) and a high one otherwise (the turn ends after
`min_delay`). It runs in microseconds, needs no model download and nothing leaves the machine.

English only: for another language `supports_language` is False and LiveKit ends the turn after `min_delay`, as in
`vad` mode."""

from __future__ import annotations

import re
from dataclasses import dataclass

from livekit.agents.language import LanguageCode
from livekit.agents.llm import ChatContext, ChatMessage

LIKELY = 0.95
UNLIKELY = 0.05
THRESHOLD = 0.5

# Words a finished English sentence does not end on.
_CONJUNCTIONS = {
    "and",
    "or",
    "but",
    "so",
    "because",
    "cause",
    "cuz",
    "then",
    "if",
    "unless",
    "although",
    "though",
    "while",
    "whereas",
    "until",
    "since",
    "than",
    "nor",
    "plus",
    "whether",
}
_FILLERS = {"um", "umm", "uh", "uhh", "uhm", "er", "erm", "hmm", "mm", "ah", "eh"}
_PREPOSITIONS = {
    "to",
    "for",
    "of",
    "with",
    "at",
    "in",
    "on",
    "from",
    "about",
    "by",
    "into",
    "onto",
    "via",
    "per",
    "without",
    "between",
    "through",
    "towards",
    "toward",
}
# Endings that close a phrase although their last word usually needs more: "I think so", "I can't log in".
_CLOSED = {
    ("think", "so"),
    ("hope", "so"),
    ("guess", "so"),
    ("believe", "so"),
    ("suppose", "so"),
    ("said", "so"),
    ("not", "so"),
    ("so", "on"),
    ("go", "on"),
    ("hold", "on"),
    ("come", "on"),
    ("carry", "on"),
    ("later", "on"),
    ("turn", "on"),
    ("turned", "on"),
    ("switch", "on"),
    ("switched", "on"),
    ("is", "on"),
    ("are", "on"),
    ("log", "in"),
    ("logged", "in"),
    ("sign", "in"),
    ("signed", "in"),
    ("check", "in"),
    ("checked", "in"),
    ("plugged", "in"),
    ("come", "in"),
    ("fill", "in"),
    ("drop", "by"),
    ("stand", "by"),
}
# "I would like", "it sounds like": a verb that wants its object; "what does it look like" is finished.
_LIKE_OPENERS = {
    "would",
    "i'd",
    "we'd",
    "you'd",
    "feel",
    "feels",
    "look",
    "looks",
    "sounds",
    "seems",
    "just",
    "more",
    "something",
    "is",
    "was",
    "it's",
}
_DETERMINERS = {
    "the",
    "a",
    "an",
    "my",
    "your",
    "his",
    "her",
    "our",
    "their",
    "its",
    "this",
    "these",
    "those",
    "some",
    "every",
    "each",
    "another",
}
_AUXILIARIES = {
    "is",
    "are",
    "was",
    "were",
    "am",
    "be",
    "been",
    "being",
    "have",
    "has",
    "had",
    "will",
    "would",
    "can",
    "could",
    "should",
    "shall",
    "may",
    "might",
    "must",
    "isn't",
    "wasn't",
    "it's",
    "that's",
    "i'm",
    "we're",
    "they're",
    "you're",
    "there's",
    "i've",
    "i'll",
    "i'd",
    "we'll",
}
# "yes it is", "I do", "we can": a pronoun before the verb makes a complete short answer.
_SUBJECTS = {"i", "you", "he", "she", "it", "we", "they", "there", "that", "this", "who", "which"}
_SUBJECT_PRONOUN_ENDINGS = {"i", "we", "they", "he", "she"}  # "and then I", "what if he"
# A modal or "do" needs a main verb after its subject: "when will it", "how do I", "can we".
_MODALS = {"will", "would", "can", "could", "should", "shall", "may", "might", "must", "do", "does", "did"}
_PRONOUNS = {"i", "you", "he", "she", "it", "we", "they"}
# Adverbs that stand before the verb they modify: "could you also", "I just".
_PREVERBAL = {"also", "just", "even", "never", "really", "actually", "probably", "maybe"}
_WH = {"what", "where", "who", "whom", "which", "when", "how", "why", "whose"}
_UNFINISHED_PUNCTUATION = (",", "...", "\u2026", "-", "\u2014", ":", ";")
_NUMBERS = {"zero", "oh", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten"}
_WORD = re.compile(r"[a-z0-9]+(?:'[a-z]+)?")


@dataclass(frozen=True)
class Verdict:
    probability: float
    reason: str


def judge(text: str) -> Verdict:
    """How likely the caller has finished, from the transcript of their turn so far."""
    stripped = text.strip().lower()
    words = _WORD.findall(stripped.replace("\u2019", "'"))
    if not words:
        return Verdict(LIKELY, "no words")
    if stripped.endswith(_UNFINISHED_PUNCTUATION):
        return Verdict(UNLIKELY, "ends on a comma, dash or ellipsis")
    last = words[-1]
    before = words[-2] if len(words) > 1 else ""
    question = stripped.endswith("?") or words[0] in _WH
    if (before, last) in _CLOSED:
        return Verdict(LIKELY, f"{before!r} {last!r} closes the phrase")
    if last in _FILLERS:
        return Verdict(UNLIKELY, f"ends on the filler {last!r}")
    if last in _CONJUNCTIONS:
        return Verdict(UNLIKELY, f"ends on the conjunction {last!r}")
    if last == "a" and (len(before) == 1 or before in _NUMBERS):  # "B C A", "seven A": an ID spelled out
        return Verdict(LIKELY, "ends a spelled-out sequence")
    if last in _DETERMINERS:
        return Verdict(UNLIKELY, f"ends on {last!r}, before the noun it needs")
    if last == "like":
        if stripped.rstrip(".!?").endswith(", like") and len(words) > 1:
            return Verdict(UNLIKELY, "ends on the filler 'like'")
        if before in _LIKE_OPENERS and not question:
            return Verdict(UNLIKELY, f"{before!r} 'like' wants what follows")
        return Verdict(LIKELY, "'like' closes the phrase")
    if last in _PREPOSITIONS:
        if question:  # "what is it for?", "where are you calling from"
            return Verdict(LIKELY, f"a question may end on {last!r}")
        return Verdict(UNLIKELY, f"ends on the preposition {last!r}")
    if last in _AUXILIARIES:
        if "'" in last:  # "it's", "I'm": nothing follows yet
            return Verdict(UNLIKELY, f"ends on {last!r}")
        if before in _SUBJECTS or question:
            return Verdict(LIKELY, f"a short answer ends on {last!r}")
        return Verdict(UNLIKELY, f"ends on the verb {last!r} with no complement")
    tag = len(words) <= 2 or re.search(r",\s*\S+\s+\S+$", stripped.rstrip("?.! ")) is not None  # "do you?"
    if last in _PRONOUNS and before in _MODALS:
        if tag:
            return Verdict(LIKELY, "a tag question")
        return Verdict(UNLIKELY, f"{before!r} {last!r} has no main verb yet")
    if last in _PREVERBAL and len(words) > 1 and not question:
        return Verdict(UNLIKELY, f"ends on {last!r}, before its verb")
    if last in _SUBJECT_PRONOUN_ENDINGS and len(words) > 1:
        return Verdict(UNLIKELY, f"ends on the subject {last!r}")
    return Verdict(LIKELY, "reads as finished")


def _last_user_text(chat_ctx: ChatContext) -> str:
    for item in reversed(chat_ctx.items):
        if isinstance(item, ChatMessage) and item.role == "user":
            return item.text_content or ""
    return ""


class TranscriptTurnDetector:
    """LiveKit's `_TurnDetector` protocol over `judge`: pass an instance as `turn_handling["turn_detection"]`."""

    @property
    def model(self) -> str:
        return "transcript-rules-v1"

    @property
    def provider(self) -> str:
        return "voxarena"

    async def unlikely_threshold(self, language: LanguageCode | None) -> float | None:
        return THRESHOLD if await self.supports_language(language) else None

    async def supports_language(self, language: LanguageCode | None) -> bool:
        return language is None or LanguageCode(str(language)).language == "en"

    async def predict_end_of_turn(self, chat_ctx: ChatContext, *, timeout: float | None = None) -> float:
        return judge(_last_user_text(chat_ctx)).probability
