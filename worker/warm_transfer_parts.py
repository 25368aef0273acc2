"""The parts of a warm transfer (worker/warm_transfer.py) that touch no call: how the human is dialled, what they are
told (spoken and in the INVITE's header), what counts as their spoken answer, and the default hold tone."""

from __future__ import annotations

import functools
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
from livekit import api, rtc
from livekit.agents import tts as agents_tts

from core.netpolicy import NetPolicy
from core.sip_uri import SipUri, checked_address

SUMMARY_HEADER = "X-Voxarena-Summary"
MAX_HEADER_CHARS = 200
FRAME_MS = 20
# The default hold audio: a soft 440 Hz beep (about -26 dBFS) every few seconds, so the caller knows the line is up.
TONE_HZ, TONE_LEVEL, TONE_ON_S, TONE_PERIOD_S = 440.0, 0.05, 0.3, 3.0


@dataclass(frozen=True)
class DialPlan:
    """How the human is reached: a number through the outbound trunk, or a SIP URI's user at its own host."""

    call_to: str
    trunk_id: str | None = None
    host: str | None = None
    tls: bool = False
    uri: SipUri | None = None  # the target's SIP URI, when it is one

    @classmethod
    def of(cls, target: str, *, trunk_id: str) -> DialPlan:
        """`target` as the control message carries it (tel: or sip:/sips: URI); ValueError saying why not."""
        scheme, _, rest = target.partition(":")
        if scheme == "tel":
            if not trunk_id:
                raise ValueError("no outbound SIP trunk is configured (VOXARENA_SIP_OUTBOUND_TRUNK_ID)")
            return cls(call_to=rest, trunk_id=trunk_id)
        uri = SipUri.parse(target)
        return cls(call_to=uri.user, host=uri.hostport(), tls=uri.tls, uri=uri)

    async def pinned(self, policy: NetPolicy) -> DialPlan:
        """The plan with a SIP URI's host replaced by the address it was checked at: the product's SIP bridge dials
        a tenant's host only where the policy lets it (public addresses, or a host the operator listed), and a name
        that resolves elsewhere by the time of the dial (DNS rebinding) reaches nothing. Raises `AddressRefused`
        saying why. A number through the trunk is the operator's own route: left as it is."""
        if self.uri is None:
            return self
        return replace(self, host=self.uri.hostport(await checked_address(policy, self.uri)))

    def request(self, **fields: Any) -> api.CreateSIPParticipantRequest:
        request = api.CreateSIPParticipantRequest(sip_call_to=self.call_to, **fields)
        if self.trunk_id is not None:
            request.sip_trunk_id = self.trunk_id
        else:
            transport = api.SIPTransport.SIP_TRANSPORT_TLS if self.tls else api.SIPTransport.SIP_TRANSPORT_UDP
            request.trunk.CopyFrom(api.SIPOutboundConfig(hostname=self.host, transport=transport))
        return request


def call_summary(items: list[Any], *, agent_name: str, reason: str | None) -> tuple[str, str]:
    """The briefing the human hears, and its one-line form for the SIP header, from the conversation so far (the
    session's chat items: the caller's and the agent's messages)."""
    said = [
        (item.role, (item.text_content or "").strip())
        for item in items
        if getattr(item, "type", None) == "message" and item.role in ("user", "assistant")
    ]
    caller = [text for role, text in said if role == "user" and text][-3:]
    spoken = [f"Hello, this is {agent_name or 'the assistant'} with a caller to transfer to you."]
    if reason:
        spoken.append(f"The reason: {reason.rstrip('.')}.")
    if caller:
        spoken.append("The caller said: " + " ".join(t if t[-1] in ".?!" else f"{t}." for t in caller))
    else:
        spoken.append("The caller has not said much yet.")
    spoken.append("Press 1 to take the call, or 2 to decline.")
    line = " | ".join(p for p in (reason or "", caller[-1] if caller else "") if p) or "warm transfer"
    return " ".join(spoken), header_value(line)


def header_value(text: str) -> str:
    """Text as one safe SIP header value: printable ASCII on one line, at most `MAX_HEADER_CHARS`."""
    flat = re.sub(r"\s+", " ", text.encode("ascii", "replace").decode()).strip()
    flat = "".join(c for c in flat if 32 <= ord(c) < 127)
    return flat[:MAX_HEADER_CHARS]


@functools.cache
def tone_frames(sample_rate: int) -> tuple[rtc.AudioFrame, ...]:
    """One period of the default hold audio, as 20 ms frames (made once per rate, with numpy: no loop of Python)."""
    per_frame = sample_rate * FRAME_MS // 1000
    total = int(sample_rate * TONE_PERIOD_S) // per_frame * per_frame
    on, fade = int(sample_rate * TONE_ON_S), sample_rate // 100
    i = np.arange(total)
    envelope = np.clip(np.minimum(i / fade, (on - i) / fade), 0.0, 1.0)
    wave = (32767 * TONE_LEVEL * envelope * np.sin(2 * np.pi * TONE_HZ * i / sample_rate)).astype(np.int16)
    return tuple(
        rtc.AudioFrame(wave[start : start + per_frame].tobytes(), sample_rate, 1, per_frame)
        for start in range(0, total, per_frame)
    )


ACCEPT_WORDS = frozenset({"yes", "yeah", "yep", "sure", "accept", "connect"})
DECLINE_WORDS = frozenset({"no", "nope", "decline", "cannot", "can't", "busy"})
# A spoken answer is a short utterance opening with one of these words ("Yes, put them through."); anything longer
# or otherwise is the human talking, never a decision.
MAX_ANSWER_WORDS = 6


def spoken_answer(text: str) -> str | None:
    """`accept`, `declined` or None for what the human said."""
    words = re.findall(r"[a-z']+", text.lower())
    if not words or len(words) > MAX_ANSWER_WORDS:
        return None
    if words[0] in ACCEPT_WORDS:
        return "accept"
    if words[0] in DECLINE_WORDS:
        return "declined"
    return None


async def spoken(tts: agents_tts.TTS, text: str) -> AsyncIterator[rtc.AudioFrame]:
    """`text` in the agent's own voice (its TTS, metered like the rest of the call)."""
    if tts.capabilities.streaming:
        async with tts.stream() as stream:
            stream.push_text(text)
            stream.end_input()
            async for ev in stream:
                yield ev.frame
    else:
        async with tts.synthesize(text) as chunked:
            async for ev in chunked:
                yield ev.frame
