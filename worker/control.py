"""Commands from the API to the job running a call (live context, ...). They arrive as reliable data packets on
the `voxarena.control` topic sent by the LiveKit server on the API's behalf, so they reach the job wherever it
runs: another process, another machine. A packet sent by a participant (a caller could try) is ignored."""

from __future__ import annotations

import logging
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

from livekit import rtc

from core.control import CONTROL_TOPIC, BadControl, ControlMessage

log = logging.getLogger("voxarena.control")

M = TypeVar("M", bound=ControlMessage)


class ControlChannel:
    def __init__(
        self, room: rtc.Room, session_id: str, spawn: Callable[[Coroutine[Any, Any, None], str], object]
    ) -> None:
        self.session_id = session_id
        self._spawn = spawn
        self._handlers: dict[type[ControlMessage], Callable[[Any], Coroutine[Any, Any, None]]] = {}
        room.on("data_received", self._on_data)

    def on(self, kind: type[M], handler: Callable[[M], Coroutine[Any, Any, None]]) -> None:
        self._handlers[kind] = handler

    def _on_data(self, packet: rtc.DataPacket) -> None:
        if packet.topic != CONTROL_TOPIC:
            return
        if packet.participant is not None:
            log.warning(
                "session %s: ignored a control packet sent by participant %s",
                self.session_id,
                packet.participant.identity,
            )
            return
        try:
            message = ControlMessage.parse(packet.data)
        except BadControl as e:
            log.warning("session %s: ignored a malformed control packet (%s)", self.session_id, e)
            return
        handler = self._handlers.get(type(message))
        if handler is None:
            log.warning("session %s: ignored a %s command: this call does not take it", self.session_id, message.type)
            return
        self._spawn(handler(message), f"control-{message.type}")
