"""What answers an outbound call: the voicemail-detection corpus (the SIP tier's test and `bench/voicemail.py`).

Each greeting is rendered by espeak-ng as 8 kHz u-law for a sipp callee (`greeting_ulaw_wav`): `LEAD_S` of silence
(the phone reaching the ear: the callee's RTP peer starts playing with the first packet after the answer), the
speech, then for
a voicemail the beep (a 1 kHz tone from sox, 0.4 s after the words), then silence, so the callee plays it once
(its RTP peer loops the file; the silence outlasts the call). `kind` is what a correct detector concludes: one of
LiveKit AMD's categories.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from .audio import _key, _need, _run, cache_dir, render_speech

LEAD_S = 1.0
BEEP_HZ = 1000
BEEP_S = 0.5
GAP_BEFORE_BEEP_S = 0.4
TAIL_S = 90.0


@dataclass(frozen=True)
class Greeting:
    name: str
    kind: str  # human, machine-vm, machine-ivr, machine-unavailable
    text: str
    beep: bool = False

    @property
    def machine(self) -> bool:
        return self.kind.startswith("machine")


CORPUS: tuple[Greeting, ...] = (
    Greeting("hello", "human", "Hello?"),
    Greeting("yeah", "human", "Yeah, hello?"),
    Greeting("this-is-dana", "human", "Hi, this is Dana."),
    Greeting("who-is-calling", "human", "Hello, who is calling please?"),
    Greeting(
        "long-human", "human", "Hello, this is Mark speaking, sorry I was just in the garden, how can I help you?"
    ),
    Greeting("speaking", "human", "Good afternoon, Priya speaking."),
    Greeting(
        "reached-sam",
        "machine-vm",
        "Hi, you've reached Sam Taylor. I can't take your call right now, please leave a message after the tone.",
        beep=True,
    ),
    Greeting(
        "not-available",
        "machine-vm",
        "The person you are calling is not available. Please leave a message after the beep.",
        beep=True,
    ),
    Greeting(
        "away-from-desk",
        "machine-vm",
        "Hello, this is Alex from accounts. I'm away from my desk, leave me a message and I will call you back.",
        beep=True,
    ),
    Greeting(
        "carrier-voicemail",
        "machine-vm",
        "Your call has been forwarded to an automated voice messaging system. At the tone, please record your "
        "voicemail message.",
        beep=True,
    ),
    Greeting(
        "mailbox-full",
        "machine-unavailable",
        "The mailbox is full and cannot accept messages at this time. Goodbye.",
    ),
    Greeting(
        "not-set-up",
        "machine-unavailable",
        "The person you are trying to reach has a voice mailbox that has not been set up yet. Goodbye.",
    ),
    Greeting(
        "clinic-menu",
        "machine-ivr",
        "Thank you for calling Riverside Clinic. For appointments, press one. For billing, press two.",
    ),
    Greeting(
        "bank-menu",
        "machine-ivr",
        "Welcome to First Harbor Bank. To check your balance, press one. To speak to an agent, press zero.",
    ),
)


def by_name(name: str) -> Greeting:
    return next(g for g in CORPUS if g.name == name)


def greeting_ulaw_wav(greeting: Greeting) -> Path:
    """The greeting as the callee plays it (8 kHz mono u-law WAV), cached like all test audio."""
    out = cache_dir() / f"greeting-{_key(greeting.text, greeting.beep, LEAD_S, TAIL_S)}-8k-ulaw.wav"
    if out.exists():
        return out
    sox = _need("sox")
    speech = render_speech(greeting.text)
    tmp = out.with_suffix(f".{os.getpid()}.tmp.wav")
    parts = [str(speech)]
    if greeting.beep:
        gap = out.with_suffix(f".{os.getpid()}.gap.wav")
        beep = out.with_suffix(f".{os.getpid()}.beep.wav")
        rate = ["-r", "22050", "-c", "1", "-b", "16", "-e", "signed-integer"]
        _run([sox, "-n", *rate, str(gap), "trim", "0", str(GAP_BEFORE_BEEP_S)])
        _run([sox, "-n", *rate, str(beep), "synth", str(BEEP_S), "sine", str(BEEP_HZ), "vol", "0.5"])
        parts += [str(gap), str(beep)]
    try:
        convert = ["-r", "8000", "-c", "1", "-e", "u-law", "-b", "8", str(tmp), "pad", str(LEAD_S), str(TAIL_S)]
        _run([sox, *parts, *convert])
        tmp.replace(out)
    finally:
        if greeting.beep:
            gap.unlink(missing_ok=True)
            beep.unlink(missing_ok=True)
    return out


def spoken_seconds(greeting: Greeting) -> float:
    """When the greeting's sound ends (its lead, speech, gap and beep), before its silent tail."""
    import wave

    with wave.open(str(render_speech(greeting.text))) as w:
        speech = w.getnframes() / w.getframerate()
    return LEAD_S + speech + (GAP_BEFORE_BEEP_S + BEEP_S if greeting.beep else 0.0)
