"""Commands from the API to the job running a call, the second half of the API -> job contract (dispatch metadata
is the first, ``core/dispatch_meta.py``). The API builds one of these and its LiveKit gateway sends it as a reliable
data packet on CONTROL_TOPIC, so it reaches the job on whichever machine runs the call; the job parses it back here
and nowhere else."""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from typing import Any, ClassVar

CONTROL_TOPIC = "voxarena.control"  # sent through LiveKit, so a command reaches the call's job on any machine
# RFC 4733 event codes of the DTMF digits
DTMF_CODES = {**{str(d): d for d in range(10)}, "*": 10, "#": 11, "A": 12, "B": 13, "C": 14, "D": 15}


class BadControl(ValueError):
    pass


@dataclass(frozen=True)
class ControlMessage:
    type: ClassVar[str]

    def encode(self) -> bytes:
        return json.dumps({"type": self.type, **dataclasses.asdict(self)}).encode()

    @staticmethod
    def parse(data: bytes | str) -> ControlMessage:
        """The message ``data`` encodes, or BadControl saying why it is none of them."""
        try:
            raw = json.loads(data)
        except ValueError as e:
            raise BadControl(f"not JSON: {e}") from None
        if not isinstance(raw, dict):
            raise BadControl("not an object")
        kind = _KINDS.get(str(raw.pop("type", "")))
        if kind is None:
            raise BadControl("unknown or missing type")
        try:
            message = kind(**raw)
        except TypeError as e:
            raise BadControl(f"{kind.type}: {e}") from None
        message._check()
        return message

    def _check(self) -> None:
        pass


@dataclass(frozen=True)
class UpdateContext(ControlMessage):
    """The call's context changed (PUT/PATCH /api/calls/{call_sid}/context): the agent's instructions follow it."""

    type: ClassVar[str] = "context"
    context: dict[str, Any]

    def _check(self) -> None:
        if not isinstance(self.context, dict):
            raise BadControl("context: not an object")


@dataclass(frozen=True)
class Say(ControlMessage):
    """A supervisor's words, said now and uninterruptible."""

    type: ClassVar[str] = "say"
    text: str

    def _check(self) -> None:
        if not isinstance(self.text, str) or not self.text.strip():
            raise BadControl("say: no text")


@dataclass(frozen=True)
class SendDtmf(ControlMessage):
    """One DTMF digit, sent on the phone call (RFC 2833)."""

    type: ClassVar[str] = "dtmf"
    digit: str

    def _check(self) -> None:
        if self.digit not in DTMF_CODES:
            raise BadControl(f"dtmf: {self.digit!r} is not one of 0-9 * # A-D")


TRANSFER_MODES = ("cold", "warm")


@dataclass(frozen=True)
class Transfer(ControlMessage):
    """A transfer of the caller to ``target``, a sip: or tel: URI: ``cold`` hands the phone caller on (a SIP REFER),
    ``warm`` has the agent reach the human first and connect the two when they accept (worker/warm_transfer.py).
    A message without a mode (from an older API) is cold."""

    type: ClassVar[str] = "transfer"
    target: str
    mode: str = "cold"

    def _check(self) -> None:
        if not isinstance(self.target, str) or not self.target.startswith(("sip:", "sips:", "tel:")):
            raise BadControl("transfer: the target is not a sip:, sips: or tel: URI")
        if self.mode not in TRANSFER_MODES:
            raise BadControl(f"transfer: mode {self.mode!r} is not one of {', '.join(TRANSFER_MODES)}")


_KINDS: dict[str, type[ControlMessage]] = {k.type: k for k in (UpdateContext, Say, SendDtmf, Transfer)}
