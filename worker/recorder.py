"""Records a call as it happens: the session row, every final message the moment it is final, per-turn latency,
and the end. Each write is durable (committed by the job process's store) before the next event is handled, so a
crash mid-call keeps everything said so far."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from livekit.agents import AgentSession, utils
from livekit.agents.llm import ChatMessage
from livekit.agents.voice.events import CloseEvent, ConversationItemAddedEvent, ErrorEvent, UserInputTranscribedEvent

from core.store import events
from core.store import sessions as repo
from core.store.db import Store
from core.store.timefmt import to_iso
from pipelines.turn_clock import TurnClock

log = logging.getLogger("voxarena.recorder")


def _iso(ts: float) -> str:
    return to_iso(datetime.fromtimestamp(ts, tz=UTC))


def turn_metrics(user: dict[str, Any] | None, agent: dict[str, Any]) -> dict[str, float]:
    """One agent turn's latencies, in seconds, from LiveKit's per-message metrics (1.8's MetricsReport)."""
    out: dict[str, float] = {}
    if user:
        if user.get("end_of_turn_delay") is not None:
            out["end_of_turn_delay"] = float(user["end_of_turn_delay"])
        if user.get("transcription_delay") is not None:
            out["transcription_delay"] = float(user["transcription_delay"])
    for ours, theirs in (("llm_ttft", "llm_node_ttft"), ("tts_ttfb", "tts_node_ttfb"), ("e2e_latency", "e2e_latency")):
        if agent.get(theirs) is not None:
            out[ours] = float(agent[theirs])
    return out


KINDS = {"stt_error": "stt", "llm_error": "llm", "tts_error": "tts"}
# Interim transcripts reach the live stream at most this often per call (the latest text wins), so a fast STT
# cannot flood the store with rows nobody needs after the final.
PARTIAL_INTERVAL = 0.2
FatalHandler = Callable[[str, str], object]  # (kind: stt|llm|tts, message)


def describe_failure(kind: str, providers: tuple[str, ...], error: BaseException | Any) -> str:
    """`llm provider gemini failed with status 500: Internal error encountered.`: the kind, every provider that was
    tried (the primary and its fallbacks) and the provider's status code when it gave one."""
    names = " then ".join(providers) if providers else "unknown"
    status = getattr(error, "status_code", None)
    message = getattr(error, "message", None) or str(error) or type(error).__name__
    code = f" with status {status}" if isinstance(status, int) and status > 0 else ""
    return f"{kind} provider {names} failed{code}: {message}"


class SessionRecorder:
    def __init__(
        self,
        store: Store,
        session_id: str,
        *,
        providers: dict[str, tuple[str, ...]] | None = None,
        provider_key: Callable[[str], str] = str.lower,
    ) -> None:
        self.store = store
        self.session_id = session_id
        self.providers = providers or {}
        self.provider_key = provider_key
        self.on_fatal: FatalHandler | None = None
        self.clock: TurnClock | None = None  # the agent's per-hop marks (pipelines/turn_clock.py)
        self.supervisor_texts: list[str] = []  # said on an operator's order: recorded with source "supervisor"
        self._last_user_metrics: dict[str, Any] | None = None
        self._writes = utils.aio.TaskSet()  # the writes in flight, awaited by `flush`
        self.error: str | None = None
        self._heartbeat: asyncio.Task[None] | None = None
        # Final transcripts of the caller that no committed user message has covered yet: when a provider fails
        # before the agent answers, the framework never commits that turn, and the recorder keeps it itself.
        self._unanswered: list[tuple[float, str]] = []
        # ... and what of it was kept: the framework may still commit the same words as a turn when the call
        # closes, after the transcript already holds them
        self._kept: list[str] = []
        self._partial_sent = ""  # the caller's interim text last written to the live stream
        self._partial_at = float("-inf")
        self._partial_pending: str | None = None
        self._partial_timer: asyncio.TimerHandle | None = None

    def start_heartbeat(self, interval: float) -> None:
        """Keeps the session's activity fresh during long silences, so the sweeper only closes true orphans."""

        async def beat() -> None:
            while True:
                await asyncio.sleep(interval)
                try:
                    await self.store.write(repo.touch, self.session_id)
                except Exception as e:
                    log.warning("heartbeat of session %s failed: %s", self.session_id, e)

        self._heartbeat = asyncio.get_running_loop().create_task(beat(), name=f"heartbeat:{self.session_id}")

    def attach(self, session: AgentSession) -> None:
        session.on("conversation_item_added", self._on_item)
        session.on("user_input_transcribed", self._on_transcribed)
        session.on("error", self._on_error)

    def _on_transcribed(self, ev: UserInputTranscribedEvent) -> None:
        text = ev.transcript.strip()
        if ev.is_final:
            self._cancel_partial()
            self._partial_sent = ""
            if text:
                self._unanswered.append((ev.created_at, text))
            return
        if not text or text == self._partial_sent:
            return
        self._partial_pending = text
        wait = self._partial_at + PARTIAL_INTERVAL - asyncio.get_running_loop().time()
        if wait <= 0:
            self._send_partial()
        elif self._partial_timer is None:
            self._partial_timer = asyncio.get_running_loop().call_later(wait, self._send_partial)

    def _send_partial(self) -> None:
        self._partial_timer = None
        text, self._partial_pending = self._partial_pending, None
        if text is None or text == self._partial_sent:
            return
        self._partial_sent = text
        self._partial_at = asyncio.get_running_loop().time()
        self._write(
            lambda db: events.emit_for_session(
                db, self.session_id, "transcript.partial", {"speaker": "user", "text": text}
            )
        )

    def _cancel_partial(self) -> None:
        if self._partial_timer is not None:
            self._partial_timer.cancel()
            self._partial_timer = None
        self._partial_pending = None

    def _served_by(self, user: dict[str, Any] | None, agent: dict[str, Any]) -> dict[str, str] | None:
        """Which provider served each stage of this turn, from LiveKit's per-message metadata."""
        out: dict[str, str] = {}
        for stage, metrics, key in (
            ("stt", user, "stt_metadata"),
            ("llm", agent, "llm_metadata"),
            ("tts", agent, "tts_metadata"),
        ):
            meta = (metrics or {}).get(key) or {}
            provider = meta.get("model_provider")
            if provider:
                out[stage] = self.provider_key(provider)
        return out or None

    def _write(self, fn: Any, *args: Any) -> None:
        task = self._writes.create_task(self.store.write(fn, *args), name=f"record:{self.session_id}")
        task.add_done_callback(self._done)

    def _done(self, fut: asyncio.Future[Any]) -> None:
        if not fut.cancelled() and fut.exception() is not None:
            log.error("could not record to session %s: %s", self.session_id, fut.exception())

    def _on_item(self, ev: ConversationItemAddedEvent) -> None:
        item = ev.item
        if not isinstance(item, ChatMessage) or item.role not in ("user", "assistant"):
            return
        text = item.text_content or ""
        if not text.strip():
            return
        metrics = dict(item.metrics or {})
        providers = source = None
        if item.role == "user":
            if any(text.strip() in kept for kept in self._kept):
                return
            self._last_user_metrics = metrics
            # what this committed turn covers is no longer unanswered
            self._unanswered = [(at, t) for at, t in self._unanswered if t not in text]
            speaker, turn = "USER", None
        elif text in self.supervisor_texts:  # an operator's words, not a reply: no turn latency
            self.supervisor_texts.remove(text)
            speaker, turn, source = "AGENT", None, "supervisor"
        else:
            timed = self.clock.take() if self.clock is not None else {}
            speaker, turn = "AGENT", {**turn_metrics(self._last_user_metrics, metrics), **timed} or None
            providers = self._served_by(self._last_user_metrics, metrics)
            self._last_user_metrics = None
        self._write(
            lambda db: repo.append_item(
                db,
                session_id=self.session_id,
                item_key=item.id,
                speaker=speaker,
                content=text,
                timestamp=_iso(item.created_at),
                interrupted=bool(item.interrupted),
                metrics=turn,
                providers=providers,
                source=source,
            )
        )

    def keep_unanswered_user_turn(self) -> None:
        """The caller's last words that never became a committed turn (the reply failed) go into the transcript."""
        if not self._unanswered:
            return
        started = self._unanswered[0][0]
        text = " ".join(t for _, t in self._unanswered)
        self._unanswered.clear()
        self._kept.append(text)
        self._write(
            lambda db: repo.append_item(
                db,
                session_id=self.session_id,
                item_key=f"unanswered-{started}",
                speaker="USER",
                content=text,
                timestamp=_iso(started),
            )
        )

    def _on_error(self, ev: ErrorEvent) -> None:
        recoverable = getattr(ev.error, "recoverable", True)
        kind = KINDS.get(getattr(ev.error, "type", ""), "pipeline")
        message = describe_failure(kind, self.providers.get(kind, ()), getattr(ev.error, "error", ev.error))
        log.warning("session %s %s error: %s", self.session_id, "recoverable" if recoverable else "fatal", message)
        self._write(
            lambda db: events.emit_for_session(
                db, self.session_id, "error", {"detail": message, "stage": kind, "recoverable": bool(recoverable)}
            )
        )
        if recoverable or self.error is not None:
            return
        self.error = message
        if self.on_fatal is not None:
            self.on_fatal(kind, message)

    async def flush(self) -> None:
        """Every write started so far is done (a failed one was logged)."""
        if writes := self._writes.tasks:
            await asyncio.gather(*writes, return_exceptions=True)

    async def close(self) -> None:
        """Everything said is written (the caller's unanswered words too); the call's end is recorded after this,
        by the job's end path (worker/ending.py)."""
        if self._heartbeat is not None:
            await utils.aio.cancel_and_wait(self._heartbeat)
        self._cancel_partial()
        self.keep_unanswered_user_turn()
        await self.flush()

    @staticmethod
    def close_reason(ev: CloseEvent) -> tuple[str, str | None]:
        reason = getattr(ev.reason, "value", str(ev.reason))
        error = None
        if ev.error is not None:
            error = str(getattr(ev.error, "error", ev.error))
        return reason, error
