"""Records a call as it happens: the session row, every final message the moment it is final, per-turn latency,
and the end. Each write is durable (committed by the job process's store) before the next event is handled, so a
crash mid-call keeps everything said so far."""

from __future__ import annotations

import asyncio
import logging
from datetime import datetime, timezone
from typing import Any

from livekit.agents import AgentSession
from livekit.agents.llm import ChatMessage
from livekit.agents.voice.events import CloseEvent, ConversationItemAddedEvent, ErrorEvent

from api.store import sessions as repo
from api.store.db import Store
from api.store.timefmt import to_iso

log = logging.getLogger("voxarena.recorder")


def _iso(ts: float) -> str:
    return to_iso(datetime.fromtimestamp(ts, tz=timezone.utc))


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


class SessionRecorder:
    def __init__(self, store: Store, session_id: str) -> None:
        self.store = store
        self.session_id = session_id
        self._last_user_metrics: dict[str, Any] | None = None
        self._pending: set[asyncio.Future[Any]] = set()
        self.error: str | None = None
        self._heartbeat: asyncio.Future[None] | None = None

    def start_heartbeat(self, interval: float) -> None:
        """Keeps the session's activity fresh during long silences, so the sweeper only closes true orphans."""

        async def beat() -> None:
            while True:
                await asyncio.sleep(interval)
                try:
                    await self.store.write(repo.touch, self.session_id)
                except Exception as e:
                    log.warning("heartbeat of session %s failed: %s", self.session_id, e)

        self._heartbeat = asyncio.ensure_future(beat())

    def attach(self, session: AgentSession) -> None:
        session.on("conversation_item_added", self._on_item)
        session.on("error", self._on_error)

    def _write(self, fn: Any, *args: Any) -> None:
        fut = asyncio.ensure_future(self.store.write(fn, *args))
        self._pending.add(fut)
        fut.add_done_callback(self._done)

    def _done(self, fut: asyncio.Future[Any]) -> None:
        self._pending.discard(fut)
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
        if item.role == "user":
            self._last_user_metrics = metrics
            speaker, turn = "USER", None
        else:
            speaker, turn = "AGENT", turn_metrics(self._last_user_metrics, metrics) or None
            self._last_user_metrics = None
        self._write(
            lambda db: repo.append_item(
                db, session_id=self.session_id, item_key=item.id, speaker=speaker, content=text,
                timestamp=_iso(item.created_at), interrupted=bool(item.interrupted), metrics=turn,
            )
        )

    def _on_error(self, ev: ErrorEvent) -> None:
        recoverable = getattr(ev.error, "recoverable", True)
        source = type(ev.source).__module__.split(".")[2] if type(ev.source).__module__.startswith("livekit.plugins.") \
            else type(ev.source).__name__
        message = f"{source}: {getattr(ev.error, 'error', ev.error)}"
        log.warning("session %s %s error: %s", self.session_id, "recoverable" if recoverable else "fatal", message)
        if not recoverable:
            self.error = message

    async def flush(self) -> None:
        if self._pending:
            await asyncio.gather(*list(self._pending), return_exceptions=True)

    async def end(self, *, reason: str, error: str | None = None) -> None:
        if self._heartbeat is not None:
            self._heartbeat.cancel()
        await self.flush()
        await self.store.write(lambda db: repo.end(db, self.session_id, reason=reason, error=error or self.error))

    @staticmethod
    def close_reason(ev: CloseEvent) -> tuple[str, str | None]:
        reason = getattr(ev.reason, "value", str(ev.reason))
        error = None
        if ev.error is not None:
            error = str(getattr(ev.error, "error", ev.error))
        return reason, error
