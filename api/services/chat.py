"""Text conversations with an agent, in the API process: each message is answered by the agent's own LLM (its
system prompt, its fallbacks) with the conversation's history, recorded as a session transcript and metered into
the ledger exactly (the tokens the provider reported), like a call. A conversation that goes quiet for
``text_session_idle_seconds`` (or is closed) ends and is analysed like a call.

Every LLM request runs as a task owned by the service: a client that goes away mid-reply does not cut the reply off
half-written, and shutdown waits for (then cancels) what is still running. Turns of one session run one at a time,
so the history each one sees is the one before it.

ConversationRelay calls (``api/services/relay.py``) use the same turns, with Twilio doing the speech.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from aiohttp import web
from livekit.agents import function_tool, llm

from core.analysis import run_and_store
from core.cluster import Lease
from core.netpolicy import NetPolicy
from core.periodic import Periodic
from core.pipeline import agent_config, agent_spec, providers_config
from core.secrets import SecretBox
from core.settings import Settings
from core.store import agents as agents_repo
from core.store import chat as chat_repo
from core.store import cluster as cluster_repo
from core.store import sessions as sessions_repo
from core.store import usage as ledger
from core.store.db import Store
from core.store.timefmt import now_iso, to_iso
from core.tools import HttpTool, ToolRunner, agent_tools, declaration
from core.variables import call_values, fill
from pipelines.builder import CONNECT, build_llm
from pipelines.config import ProviderConfigError, prompt_with_context
from pipelines.metering import CallMeter, UsageEvent
from pipelines.pricing import PriceBook

log = logging.getLogger("voxarena.chat")

# A conversation's turn across nodes: the lease's name prefix, how long a turn may hold it, how often a waiting turn
# asks again.
TURN_LEASE = "chat-turn:"
TURN_LEASE_SECONDS = 120.0
TURN_LEASE_POLL = 0.05

# Rounds of tool calls one message may take before the LLM must answer in words.
MAX_TOOL_STEPS = 5
MAX_HISTORY_ITEMS = 100  # the newest items of a conversation the LLM is given (a long chat stays in its window)
MAX_MESSAGE_CHARS = 8000
DEFAULT_PROMPT = "You are a helpful assistant."
# An ended conversation not analysed yet (this process stopped first, or the sweeper ended it) is picked up for
# this long after it ended.
ANALYSIS_CATCH_UP = timedelta(days=1)
SHUTDOWN_GRACE_SECONDS = 10.0

Delta = Callable[[str], Awaitable[None]]


class LlmFailed(Exception):
    """The agent's LLM (and every fallback) failed on this message; the user's message is kept."""


@dataclass
class Turn:
    """One message and its answer. ``heard`` is set when the listener interrupted the answer (a relay caller
    barging in): the transcript then keeps what was heard, marked interrupted."""

    session_id: str
    content: str
    source: str | None = None
    heard: str | None = None
    reply: str = ""
    timestamp: str = ""


@dataclass(frozen=True)
class Opened:
    row: dict[str, Any]
    previous_session_id: str | None = None


class LedgerSink:
    """Usage of the API process's LLM calls goes straight into the ledger (idempotent by key, so a retried write
    cannot double-bill)."""

    def __init__(self, store: Store) -> None:
        self.store = store

    async def record(self, events: list[UsageEvent]) -> None:
        await self.store.write(ledger.record_events, [e.as_dict() for e in events])


class _Models:
    """The agents' LLMs, built once per agent version and reused: building one (google-genai and httpx clients,
    their TLS contexts) takes a quarter of a second of CPU, so it runs on a thread, never on the event loop. An
    entry replaced (the agent changed) or evicted is closed once no turn uses it any more."""

    SIZE = 32

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._entries: dict[tuple[str, str], list[Any]] = {}  # key -> [model, provider names, users, retired]

    @contextlib.asynccontextmanager
    async def use(self, agent: dict[str, Any]) -> AsyncIterator[tuple[llm.LLM, tuple[str, ...]]]:
        key = (agent["id"], str(agent.get("updated_at")))
        entry = self._entries.get(key)
        if entry is None:
            model, names = await asyncio.to_thread(build_llm, agent_spec(agent), providers_config(self.settings))
            entry = self._entries.get(key)
            if entry is not None:  # another turn built it meanwhile: use that one
                await model.aclose()
            else:
                entry = self._entries[key] = [model, names, 0, False]
                for old in self._retire_all_but(key):
                    if old[2] == 0:
                        await old[0].aclose()
        else:
            self._entries[key] = self._entries.pop(key)  # the most recently used last
        entry[2] += 1
        try:
            yield entry[0], entry[1]
        finally:
            entry[2] -= 1
            if entry[3] and entry[2] == 0:
                await entry[0].aclose()

    def _retire_all_but(self, keep: tuple[str, str]) -> list[list[Any]]:
        """The agent's older versions, and the least recently used beyond SIZE."""
        others = [k for k in self._entries if k != keep]
        stale = [k for k in others if k[0] == keep[0]]
        stale += [k for k in others if k not in stale][: max(0, len(self._entries) - len(stale) - self.SIZE)]
        retired = []
        for k in stale:
            entry = self._entries.pop(k)
            entry[3] = True
            retired.append(entry)
        return retired

    async def aclose(self) -> None:
        for key in list(self._entries):
            entry = self._entries.pop(key)
            entry[3] = True
            if entry[2] == 0:
                await entry[0].aclose()


@dataclass
class ChatService:
    store: Store
    settings: Settings
    book: PriceBook
    policy: NetPolicy  # what an agent's HTTP tools may reach
    box: SecretBox  # opens their header values
    tasks: set[asyncio.Task[Any]] = field(default_factory=set)
    sockets: set[web.WebSocketResponse] = field(default_factory=set)
    _locks: dict[str, list[Any]] = field(default_factory=dict)
    _analysing: set[str] = field(default_factory=set)
    # ConversationRelay calls whose socket is open here: a long silence on a live call is no orphan, so each sweep
    # touches them (the orphan sweeper closes sessions without activity).
    live_relays: set[str] = field(default_factory=set)
    _periodic: Periodic | None = None
    lease: Lease | None = None  # the idle sweep runs on one node of a cluster at a time
    models: _Models = field(init=False)

    def __post_init__(self) -> None:
        self.models = _Models(self.settings)

    # ---- lifecycle ----
    def start(self) -> None:
        idle = self.settings.text_session_idle_seconds
        self._periodic = Periodic(
            "text-sessions", max(0.2, min(30.0, idle / 4)), self.sweep_once, log, lease=self.lease
        )
        self._periodic.start()

    async def stop(self) -> None:
        if self._periodic is not None:
            await self._periodic.stop()
        for ws in list(self.sockets):
            await ws.close(code=1001, message=b"server shutting down")
        deadline = time.monotonic() + SHUTDOWN_GRACE_SECONDS
        while self.tasks:  # a closing socket may still spawn its call's end: wait for those too
            _, late = await asyncio.wait(list(self.tasks), timeout=max(0.0, deadline - time.monotonic()))
            if late and time.monotonic() >= deadline:
                for task in late:
                    task.cancel()
                await asyncio.wait(late)
            await asyncio.sleep(0)  # let the done callbacks drop them from the set
        await self.models.aclose()

    def spawn(self, coro: Coroutine[Any, Any, Any], name: str) -> asyncio.Task[Any]:
        task = asyncio.get_running_loop().create_task(coro, name=name)
        self.tasks.add(task)
        task.add_done_callback(self._done)
        return task

    def _done(self, task: asyncio.Task[Any]) -> None:
        self.tasks.discard(task)
        if not task.cancelled() and task.exception() is not None and not isinstance(task.exception(), LlmFailed):
            log.error("task %s failed", task.get_name(), exc_info=task.exception())

    @contextlib.asynccontextmanager
    async def locked(self, session_id: str) -> AsyncIterator[None]:
        """One turn of a conversation at a time: in this process an asyncio lock; with several nodes on one
        PostgreSQL store also a lease in the store, since the next message may arrive at another node."""
        entry = self._locks.setdefault(session_id, [asyncio.Lock(), 0])
        entry[1] += 1
        try:
            async with entry[0]:
                if self.store.backend == "postgresql":
                    async with self._cluster_turn(session_id):
                        yield
                else:
                    yield
        finally:
            entry[1] -= 1
            if entry[1] == 0:
                self._locks.pop(session_id, None)

    @contextlib.asynccontextmanager
    async def _cluster_turn(self, session_id: str) -> AsyncIterator[None]:
        lease = Lease(
            self.store,
            TURN_LEASE + session_id,
            f"{self.lease.holder if self.lease else ''}:{uuid.uuid4().hex}",
            TURN_LEASE_SECONDS,
        )
        deadline = time.monotonic() + TURN_LEASE_SECONDS
        while not await lease.take():
            if time.monotonic() > deadline:
                raise TimeoutError(
                    f"conversation {session_id}: another node's turn did not end within {TURN_LEASE_SECONDS:.0f} s"
                )
            await asyncio.sleep(TURN_LEASE_POLL)
        try:
            yield
        finally:
            await lease.release()

    # ---- text sessions ----
    async def open_text(
        self,
        owner_id: str,
        agent: dict[str, Any],
        session_id: str | None,
        *,
        user_id: str | None,
        conversation_id: str | None,
        campaign: str | None = None,
    ) -> Opened:
        """The text session a message goes to: the tenant's own live session with that id and agent; a new one
        continuing it when it has ended; a new one when it is absent, someone else's or another agent's (never
        saying which)."""

        def open_(db: Any) -> Opened:
            row = chat_repo.find_text_session(db, owner_id, session_id) if session_id else None
            if row is not None and row["agent_id"] != agent["id"]:
                row = None
            if row is not None and row["status"] != "ended":
                sessions_repo.touch(db, row["id"])  # a message arrived: not idle, even before it is stored
                return Opened(row)
            previous = row["id"] if row is not None else None
            sid = sessions_repo.create(
                db,
                owner_id=owner_id,
                agent_id=agent["id"],
                status="active",
                client_id=agent["client_id"],
                channel="text",
                user_id=user_id or (row or {}).get("user_id"),
                conversation_id=conversation_id or (row or {}).get("conversation_id") or str(uuid.uuid4()),
                previous_session_id=previous,
                campaign=campaign or (row or {}).get("campaign"),
            )
            return Opened(sessions_repo.get_row(db, sid), previous)

        return await self.store.write(open_)

    async def message(self, agent: dict[str, Any], turn: Turn, on_delta: Delta | None = None) -> Turn:
        """Answer one message (an owned task: it completes even if the caller stops waiting)."""
        task = self.spawn(self.run_turn(agent, turn, on_delta), f"chat-turn:{turn.session_id}")
        return await asyncio.shield(task)

    async def run_turn(
        self, agent: dict[str, Any], turn: Turn, on_delta: Delta | None = None, context: dict[str, Any] | None = None
    ) -> Turn:
        async with self.locked(turn.session_id):
            return await self._turn(agent, turn, on_delta, context)

    async def _turn(
        self, agent: dict[str, Any], turn: Turn, on_delta: Delta | None, context: dict[str, Any] | None
    ) -> Turn:
        sid = turn.session_id
        user_key = f"user-{uuid.uuid4().hex}"
        await self.store.write(
            lambda db: sessions_repo.append_item(
                db,
                session_id=sid,
                item_key=user_key,
                speaker="USER",
                content=turn.content,
                timestamp=now_iso(),
                source=turn.source,
            )
        )
        items = await self.store.read(lambda db: chat_repo.history(db, sid, limit=MAX_HISTORY_ITEMS))
        spec = agent_spec(agent)
        ctx = llm.ChatContext.empty()
        prompt = fill(spec.system_prompt or DEFAULT_PROMPT, call_values(context, agent=agent, session_id=sid)) or ""
        ctx.add_message(role="system", content=prompt_with_context(prompt, context))
        for item in items:
            ctx.add_message(role="user" if item["speaker"] == "USER" else "assistant", content=_llm_content(item))
        meter = CallMeter(
            self.book,
            LedgerSink(self.store),
            owner_id=agent["owner_id"],
            session_id=sid,
            agent_id=agent["id"],
            key_scope=sid,
        )
        tools = [t for t in agent_tools(agent_config(agent)) if isinstance(t, HttpTool)]  # call tools: voice only
        runner = ToolRunner(self.store, self.policy, self.box, owner_id=agent["owner_id"], session_id=sid)
        declared = [function_tool(_declared_only, raw_schema=declaration(t)) for t in tools]
        parts: list[str] = []
        first: float | None = None
        try:
            async with self.models.use(agent) as (model, names):
                for step in range(MAX_TOOL_STEPS + 1):
                    # the last step may not call a tool: after MAX_TOOL_STEPS rounds the LLM must answer
                    asked = await _ask(
                        model, names, ctx, on_delta, sid, tools=declared if step < MAX_TOOL_STEPS else []
                    )
                    parts += asked.parts
                    first = first if first is not None else asked.first
                    provider = self.book.provider_key(asked.served["model_provider"] or "unknown")
                    await meter.record_llm_call(
                        key=f"chat/{user_key}" if step == 0 else f"chat/{user_key}/{step}",
                        provider=provider,
                        model=asked.served["model_name"] or None,
                        input_tokens=asked.prompt_tokens,
                        output_tokens=asked.completion_tokens,
                    )
                    if not asked.calls:
                        break
                    await self._run_tools(runner, tools, ctx, asked.calls)
        except ProviderConfigError as e:
            log.error("session %s: %s", sid, e)
            raise LlmFailed(str(e)) from None
        finally:
            await runner.aclose()
        turn.reply = "".join(parts)
        turn.timestamp = now_iso()
        content = turn.heard if turn.heard is not None else turn.reply
        metrics = {"llm_ttft": round(first, 3)} if first is not None else None
        await self.store.write(
            lambda db: sessions_repo.append_item(
                db,
                session_id=sid,
                item_key=f"agent-{user_key}",
                speaker="AGENT",
                content=content,
                timestamp=turn.timestamp,
                interrupted=turn.heard is not None,
                metrics=metrics,
                providers={"llm": provider},
            )
        )
        return turn

    async def _run_tools(
        self, runner: ToolRunner, tools: list[HttpTool], ctx: llm.ChatContext, calls: list[llm.FunctionToolCall]
    ) -> None:
        """The LLM's tool calls, one after the other, each call and its output added to the conversation."""
        by_name = {t.name: t for t in tools}
        for call in calls:
            ctx.items.append(
                llm.FunctionCall(call_id=call.call_id, name=call.name, arguments=call.arguments, extra=call.extra or {})
            )
            tool = by_name.get(call.name)
            try:
                arguments = json.loads(call.arguments or "{}")
            except ValueError:
                arguments = None
            if tool is None or not isinstance(arguments, dict):
                why = f"error: there is no tool {call.name}" if tool is None else "error: the arguments are not JSON"
                output, is_error = why, True
            else:
                result = await runner.call_http(tool, arguments, call.call_id)
                output, is_error = result.text, result.status != "ok"
            ctx.items.append(
                llm.FunctionCallOutput(call_id=call.call_id, name=call.name, output=output, is_error=is_error)
            )

    # ---- the end of a conversation ----
    async def close(self, session_id: str, *, reason: str, error: str | None = None) -> bool:
        """End the session (after a turn in flight) and analyse it; False if it had ended already."""
        async with self.locked(session_id):
            ended = await self.store.write(lambda db: sessions_repo.end(db, session_id, reason=reason, error=error))
        if ended:
            self.analyse_later(session_id)
        return ended

    def analyse_later(self, session_id: str) -> None:
        if session_id in self._analysing:
            return
        self._analysing.add(session_id)
        self.spawn(self._analyse(session_id), f"chat-analysis:{session_id}")

    async def _analyse(self, session_id: str) -> None:
        try:
            row = await self.store.read(sessions_repo.get_row, session_id)
            agent = await self.store.read(agents_repo.get_any_owner, row["agent_id"])
            meter = CallMeter(
                self.book,
                LedgerSink(self.store),
                owner_id=row["owner_id"],
                session_id=session_id,
                agent_id=row["agent_id"],
                key_scope=session_id,
            )
            try:
                async with self.models.use(agent) as (model, _):
                    await run_and_store(self.store, session_id, model, meter=meter)
            except ProviderConfigError as e:
                reason = str(e)
                await self.store.write(
                    lambda db: sessions_repo.store_analysis(db, session_id, result=None, error=reason, attempts=0)
                )
        finally:
            self._analysing.discard(session_id)

    async def sweep_once(self, now: datetime | None = None) -> list[str]:
        """End the text sessions idle for ``text_session_idle_seconds`` (not one answering a message now) and
        analyse every ended conversation still without an analysis; returns the sessions it ended."""
        now = now or datetime.now(UTC)
        cutoff = to_iso(now - timedelta(seconds=self.settings.text_session_idle_seconds))

        busy = set(self._locks)  # answering a message now: not idle, whatever its last activity says

        def end_idle(db: Any) -> list[str]:
            ended = []
            for sid in chat_repo.idle_sessions(db, cutoff):
                if sid in busy or cluster_repo.holder(db, TURN_LEASE + sid) is not None:  # or on another node
                    continue
                last = sessions_repo.get_row(db, sid)["last_activity_at"]
                if sessions_repo.end(db, sid, reason="idle", ended_at=last):
                    ended.append(sid)
            return ended

        ended = await self.store.write(end_idle)
        for sid in list(self.live_relays):
            await self.store.write(sessions_repo.touch, sid)
        if ended:
            log.info("ended %d idle text sessions", len(ended))
        for sid in await self.store.read(chat_repo.unanalysed, to_iso(now - ANALYSIS_CATCH_UP)):
            self.analyse_later(sid)
        return ended


def _llm_content(item: dict[str, Any]) -> str:
    if item.get("source") == "dtmf":
        return f"(The caller pressed {item['content']} on the keypad.)"
    return item["content"]


@dataclass
class Asked:
    """One LLM request of a turn: its text, the tokens the provider reported, the time to the first chunk, which
    provider served it (with fallbacks, the one that answered) and the tool calls it made."""

    parts: list[str]
    prompt_tokens: int
    completion_tokens: int
    first: float | None
    served: dict[str, Any]
    calls: list[llm.FunctionToolCall]


async def _declared_only(raw_arguments: dict[str, object]) -> str:
    raise RuntimeError("text turns run their tools themselves (ChatService._run_tools)")


async def _ask(
    model: llm.LLM,
    names: tuple[str, ...],
    ctx: llm.ChatContext,
    on_delta: Delta | None,
    sid: str,
    *,
    tools: list[Any] | None = None,
) -> Asked:
    """Stream one answer of the LLM (`tools` declared to it)."""
    parts: list[str] = []
    calls: list[llm.FunctionToolCall] = []
    prompt = completion = 0
    started = time.monotonic()
    first: float | None = None
    try:
        async with model.chat(chat_ctx=ctx, tools=tools or None, conn_options=CONNECT) as stream:
            async for chunk in stream:
                text = chunk.delta.content if chunk.delta else None
                if text:
                    first = first if first is not None else time.monotonic() - started
                    parts.append(text)
                    if on_delta is not None:
                        await on_delta(text)
                if chunk.delta and chunk.delta.tool_calls:
                    calls += chunk.delta.tool_calls
                if chunk.usage is not None:
                    prompt, completion = chunk.usage.prompt_tokens, chunk.usage.completion_tokens
    except Exception as e:
        reason = f"llm provider {' then '.join(names)} failed: {e}"
        log.error("session %s: %s", sid, reason)
        raise LlmFailed(reason) from None
    served = dict(model.metrics_metadata)
    served["model_provider"] = served.get("model_provider") or model.provider
    served["model_name"] = served.get("model_name") or model.model
    return Asked(parts, prompt, completion, first, served, calls)
