"""A per-turn trace of the session's speech handles, logged at DEBUG under `voxarena.turns`: when each reply was
created, whether it played, was interrupted or failed, and the caller's and the agent's states around it. It tells
an unanswered turn from a slow one (`VOXARENA_LOG_LEVEL=DEBUG`). Transcripts are not logged, only their length."""

from __future__ import annotations

import logging
import time
from typing import Any

from livekit.agents import AgentSession
from livekit.agents.voice import SpeechHandle

log = logging.getLogger("voxarena.turns")


class TurnTrace:
    def __init__(self, session_id: str) -> None:
        self.session_id = session_id
        self.t0 = time.monotonic()

    def _log(self, what: str, *args: Any) -> None:
        if log.isEnabledFor(logging.DEBUG):
            log.debug("%s +%.3fs " + what, self.session_id, time.monotonic() - self.t0, *args)

    def attach(self, session: AgentSession) -> None:
        session.on("speech_created", self._on_speech)
        session.on("user_state_changed", lambda ev: self._log("user %s -> %s", ev.old_state, ev.new_state))
        session.on("agent_state_changed", lambda ev: self._log("agent %s -> %s", ev.old_state, ev.new_state))
        session.on("agent_false_interruption", lambda ev: self._log("false interruption"))
        session.on(
            "user_input_transcribed",
            lambda ev: self._log("transcript final=%s words=%d", ev.is_final, len(ev.transcript.split())),
        )

    def _on_speech(self, ev: Any) -> None:
        handle: SpeechHandle = ev.speech_handle
        self._log("speech %s created (%s)", handle.id, ev.source)
        handle.add_done_callback(lambda h: self._log("speech %s done: interrupted=%s", h.id, h.interrupted))
