"""The end-of-turn corpus: short phone conversations, each user utterance marked complete (the caller is done and
expects an answer) or incomplete (the caller stopped mid-thought: a trailing "and", a filler, "so my number is", a
pause in the middle of a sentence). Written as callers talk to a support or booking line, not to fit any detector.

Each conversation is one call: the agent greets with `opener`, then every user turn is spoken (espeak-ng) and
followed by silence until the agent answers; `reply` is what the agent says next."""

from __future__ import annotations

from dataclasses import dataclass

COMPLETE, INCOMPLETE = "complete", "incomplete"


@dataclass(frozen=True)
class Turn:
    text: str
    kind: str  # COMPLETE | INCOMPLETE
    category: str
    reply: str


@dataclass(frozen=True)
class Conversation:
    name: str
    opener: str
    turns: tuple[Turn, ...]


def _c(text: str, category: str, reply: str) -> Turn:
    return Turn(text, COMPLETE, category, reply)


def _i(text: str, category: str, reply: str = "Go on.") -> Turn:
    return Turn(text, INCOMPLETE, category, reply)


CORPUS: tuple[Conversation, ...] = (
    Conversation(
        "restaurant booking",
        "Thanks for calling Luigi's. How can I help?",
        (
            _c("I would like to book a table for tonight.", "request", "Sure. For how many people?"),
            _c("Four people.", "answer", "What time would you like?"),
            _i("Around eight, and", "trailing and"),
            _c("We need a high chair for the baby.", "request", "No problem. Can I have a name?"),
            _i("It's under the name", "pause mid-sentence"),
            _c("Martinez.", "answer", "Thank you, you are booked for eight."),
        ),
    ),
    Conversation(
        "opening hours",
        "Good morning, City Library. What can I do for you?",
        (
            _c("What time do you open on Saturday?", "question", "We open at ten on Saturdays."),
            _c("And when do you close?", "question", "At four in the afternoon."),
            _i("Um, is the parking", "pause mid-sentence"),
            _c("Is the parking free?", "question", "Yes, for the first two hours."),
            _i("Okay, um", "trailing um"),
            _c("No, that's all, thank you.", "answer", "Have a nice day."),
        ),
    ),
    Conversation(
        "billing",
        "You're through to billing. How can I help you today?",
        (
            _c("I was charged twice this month.", "answer", "I'm sorry about that. What is your account number?"),
            _i("So my number is", "so my number is"),
            _c("Four seven two nine one eight.", "number", "Thanks. I see two charges of forty dollars."),
            _c("Can you refund one of them?", "question", "Yes, I can do that now."),
            _i("Great, and could you also", "trailing and"),
            _c("Please send me a receipt by email.", "request", "Done. Anything else?"),
        ),
    ),
    Conversation(
        "delivery",
        "Hi, this is Parcel Express. How can I help?",
        (
            _c("My package hasn't arrived yet.", "answer", "I can check. What is the tracking number?"),
            _c("It is X Y Z seven seven two.", "spelled ID", "I found it. It is out for delivery."),
            _i("When will it", "pause mid-sentence"),
            _c("When will it get here?", "question", "Before six this evening."),
            _i("Could you leave it with my neighbour at number", "pause mid-sentence"),
            _c("Yes.", "short reply", "I've added a note for the driver."),
        ),
    ),
    Conversation(
        "doctor",
        "Westside Clinic, how can I help you?",
        (
            _c("I need to see a doctor this week.", "request", "Of course. What is your date of birth?"),
            _c("The third of May, nineteen eighty two.", "number", "Thank you. Is it for a check-up?"),
            _i("No, I have a cough and", "trailing and"),
            _c("It has lasted two weeks.", "answer", "I have Thursday at nine. Does that work?"),
            _i("Thursday is, um", "trailing um"),
            _c("Thursday is fine.", "short reply", "Great, see you then."),
        ),
    ),
    Conversation(
        "internet",
        "Welcome to FastNet support. What seems to be the problem?",
        (
            _c("My internet stopped working this morning.", "answer", "Sorry to hear that. Is the router light on?"),
            _c("No.", "short reply", "Please unplug it for ten seconds."),
            _i("I unplugged it and", "trailing and"),
            _c("Now the light is green.", "answer", "Good. Can you open a web page?"),
            _c("Yes, it works now.", "short reply", "Wonderful."),
            _c("Thanks for your help.", "answer", "You're welcome."),
        ),
    ),
    Conversation(
        "car rental",
        "Drive Away rentals, how may I help?",
        (
            _c("Do you have a car for next weekend?", "question", "Yes. Small or large?"),
            _i("I think a", "pause mid-sentence"),
            _c("A large one, please.", "request", "From Friday to Sunday?"),
            _c("Friday to Monday.", "answer", "That is one hundred and twenty dollars."),
            _i("Does that include the", "pause mid-sentence"),
            _c("Does that include insurance?", "question", "Basic insurance is included."),
        ),
    ),
    Conversation(
        "password",
        "IT help desk, what can I do for you?",
        (
            _c("I forgot my password.", "answer", "I can reset it. What is your employee ID?"),
            _c("It's B K four four nine.", "spelled ID", "Thanks. I will send a code to your phone."),
            _i("My phone number changed, so", "trailing so"),
            _c("The new number is five five five zero one nine two.", "number", "Updated. The code is on its way."),
            _c("Got it.", "short reply", "Please read me the code."),
            _c("Seven one three eight.", "number", "Your password has been reset."),
        ),
    ),
    Conversation(
        "hotel",
        "Grand Hotel reception, good evening.",
        (
            _c("Can I get a late checkout tomorrow?", "question", "Until one o'clock is possible."),
            _i("Could it be a bit later, like", "pause mid-sentence"),
            _c("Could it be two o'clock?", "question", "Two is fine for a small fee."),
            _i("How much is the", "pause mid-sentence"),
            _c("How much is it?", "question", "Twenty dollars."),
            _c("Okay, please do that.", "request", "It's arranged."),
        ),
    ),
    Conversation(
        "pharmacy",
        "Main Street Pharmacy, how can I help?",
        (
            _c("Is my prescription ready?", "question", "Can I have your last name?"),
            _c("Okafor, O K A F O R.", "spelled ID", "Yes, it's ready."),
            _i("Can my husband pick it up for", "pause mid-sentence"),
            _c("Can my husband pick it up?", "question", "Yes, with your ID."),
            _i("Um, and what if he", "trailing um"),
            _c("Thank you, bye.", "short reply", "Goodbye."),
        ),
    ),
    Conversation(
        "bank",
        "Harbour Bank, how can I help you?",
        (
            _c("I lost my debit card.", "answer", "I'm sorry. I will block it now."),
            _c("Please send me a new one.", "request", "Is your address still the same?"),
            _i("Yes, it's the same, but", "trailing but"),
            _c("I moved to a new flat last month.", "answer", "What is the new address?"),
            _i("It's twelve", "pause mid-sentence"),
            _c("Twelve Oak Road.", "answer", "Thanks, the card will arrive in five days."),
        ),
    ),
)

# The two speakers every turn is spoken by.
VOICES = (("en-us", 170), ("en-gb", 140))


def counts() -> dict[str, int]:
    out = {COMPLETE: 0, INCOMPLETE: 0}
    for conv in CORPUS:
        for turn in conv.turns:
            out[turn.kind] += 1
    return out
