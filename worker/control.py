"""Commands from the API to the job running a call (live context, ...). They arrive as reliable data packets on
the `voxarena.control` topic sent by the LiveKit server on the API's behalf, so they reach the job wherever it
runs: another process, another machine. A packet sent by a participant (a caller could try) is ignored."""

from __future__ import annotations

import json
import logging
from typing import Any, Awaitable, Callable

from livekit import rtc

from core.livekit import CONTROL_TOPIC

log = logging.getLogger("voxarena.control")

Handler = Callable[[dict[str, Any]], Awaitable[None]]


class ControlChannel:
    def __init__(self, room: rtc.Room, session_id: str, spawn: Callable[[Awaitable[Any], str], None]) -> None:
        self.session_id = session_id
        self._spawn = spawn
        self._handlers: dict[str, Handler] = {}
        room.on("data_received", self._on_data)

    def on(self, kind: str, handler: Handler) -> None:
        self._handlers[kind] = handler

    def _on_data(self, packet: rtc.DataPacket) -> None:
        if packet.topic != CONTROL_TOPIC:
            return
        if packet.participant is not None:
            log.warning("session %s: ignored a control packet sent by participant %s", self.session_id,
                        packet.participant.identity)
            return
        try:
            message = json.loads(packet.data)
            handler = self._handlers[message["type"]]
        except (ValueError, KeyError, TypeError) as e:
            log.warning("session %s: ignored a malformed control packet (%s)", self.session_id, e)
            return
        self._spawn(handler(message), f"control-{message['type']}")
