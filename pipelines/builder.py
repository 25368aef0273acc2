"""Builds an agent's STT -> LLM -> TTS session from its spec, with local VAD and turn detection only."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import importlib
import logging
import re
from collections.abc import AsyncIterable, AsyncIterator, Awaitable, Callable, Sequence
from concurrent import futures
from dataclasses import dataclass
from typing import Any

from livekit import rtc
from livekit.agents import (
    Agent,
    AgentSession,
    AgentStateChangedEvent,
    APIConnectOptions,
    APIError,
    ModelSettings,
    StopResponse,
    inference,
    tokenize,
    vad,
)
from livekit.agents import llm as llm_base
from livekit.agents import stt as stt_base
from livekit.agents import tts as tts_base
from livekit.agents.llm import chat_context
from livekit.agents.voice import SpeechHandle
from livekit.agents.voice.agent_session import SessionConnectOptions
from livekit.agents.voice.turn import TurnHandlingOptions
from livekit.plugins import silero
from pydantic import BaseModel

from .config import AgentSpec, ProvidersConfig, TurnTaking
from .registry import builder
from .turn_clock import TurnClock
from .turn_detector import TranscriptTurnDetector

log = logging.getLogger("voxarena.pipeline")


class BackoffConnectOptions(APIConnectOptions):
    """Retries that wait twice as long each time (LiveKit's own retry at once, then at a fixed interval)."""

    def _interval_for_retry(self, num_retries: int) -> float:
        return float(self.retry_interval * 2**num_retries)


# Fail a broken provider within seconds: a caller waiting in silence is worse than a clean hang-up. One retry per
# request, then the first unrecoverable error (retries exhausted) closes the session with its reason.
CONNECT = APIConnectOptions(max_retry=1, retry_interval=0.5, timeout=8.0)
# The caller's audio stream: three connection attempts, 0.5 s then 1 s apart, then the call ends on the failure
# (VoiceAgent.stt_node keeps LiveKit from starting the round again).
STT_CONNECT = BackoffConnectOptions(max_retry=2, retry_interval=0.5, timeout=8.0)
UNLIMITED_ERRORS = 1_000_000


# A fallback list takes over at once: no second try on the provider that just failed, a short wait per attempt.
FALLBACK_ATTEMPT_TIMEOUT = 8.0


@dataclass(frozen=True)
class Pipeline:
    stt: stt_base.STT[Any]
    llm: llm_base.LLM[Any]
    tts: tts_base.TTS[Any]
    # Provider keys in the order they are tried (the primary first).
    stt_providers: tuple[str, ...] = ()
    llm_providers: tuple[str, ...] = ()
    tts_providers: tuple[str, ...] = ()


def _chain(
    agent: AgentSpec,
    cfg: ProvidersConfig,
    kind: str,
    primary: str,
    fallbacks: tuple[str, ...],
    extra: Callable[[str], dict[str, Any]] | None = None,
) -> tuple[list[Any], tuple[str, ...]]:
    names = tuple(dict.fromkeys((primary, *fallbacks)))  # a provider listed twice is tried once
    built = []
    for name in names:
        kwargs = extra(name) if extra else {}
        instance = builder(kind, name)(agent, cfg, **kwargs)
        for meter in kwargs.values():
            if hasattr(meter, "model"):  # a metered session or wire labels its usage with the model
                meter.model = getattr(instance, "model", None)
        built.append(instance)
    return built, names


def build_pipeline(
    agent: AgentSpec,
    cfg: ProvidersConfig,
    *,
    vad_model: vad.VAD | None = None,
    stt_kwargs: Callable[[str], dict[str, Any]] | None = None,
    tts_kwargs: Callable[[str], dict[str, Any]] | None = None,
) -> Pipeline:
    """Build the three providers (each with its fallbacks behind LiveKit's FallbackAdapter); raises
    ProviderConfigError before any audio flows if one cannot be built. ``stt_kwargs(provider)`` and
    ``tts_kwargs(provider)`` give extra keyword arguments for a provider's builder (the meter hands each STT its own
    metered HTTP session, each TTS its own wire)."""
    stts, stt_names = _chain(agent, cfg, "stt", agent.stt_provider, agent.fallback_stt_providers, stt_kwargs)
    model, llm_names = build_llm(agent, cfg)
    ttss, tts_names = _chain(agent, cfg, "tts", agent.tts_provider, agent.fallback_tts_providers, tts_kwargs)
    return Pipeline(
        stt=stts[0]
        if len(stts) == 1
        else stt_base.FallbackAdapter(
            stts, vad=vad_model, attempt_timeout=FALLBACK_ATTEMPT_TIMEOUT, max_retry_per_stt=0, retry_interval=0.5
        ),
        llm=model,
        tts=ttss[0] if len(ttss) == 1 else tts_base.FallbackAdapter(ttss, max_retry_per_tts=0),
        stt_providers=stt_names,
        llm_providers=llm_names,
        tts_providers=tts_names,
    )


class FallbackLLM(llm_base.FallbackAdapter):
    """LiveKit's FallbackAdapter, naming its LLMs in the order it tries them: its ``chat()`` takes no
    ``response_format``, so the post-call analysis (core/analysis.py) walks them itself."""

    def __init__(self, llms: list[llm_base.LLM[Any]], **kwargs: Any) -> None:
        super().__init__(llms, **kwargs)
        self.instances = tuple(llms)


def build_llm(agent: AgentSpec, cfg: ProvidersConfig) -> tuple[llm_base.LLM[Any], tuple[str, ...]]:
    """The agent's LLM with its fallbacks (the call's and the post-call analysis's), and the provider order."""
    llms, names = _chain(agent, cfg, "llm", agent.llm_provider, agent.fallback_llm_providers)
    if len(llms) == 1:
        return llms[0], names
    return FallbackLLM(llms, attempt_timeout=FALLBACK_ATTEMPT_TIMEOUT, max_retry_per_llm=0, retry_interval=0.5), names


NO_OVERRIDES = TurnTaking()


@dataclass(frozen=True)
class TurnDefaults:
    """The product's turn-taking defaults (its settings); an agent's `TurnTaking` overrides each one it sets."""

    mode: str = "transcript"
    min_delay: float = 0.4
    max_delay: float = 3.0
    interruption_min_duration: float = 0.5
    preemptive_generation: bool = True

    def min_delay_for(self, turn: TurnTaking) -> float:
        return self.min_delay if turn.min_endpointing_delay is None else turn.min_endpointing_delay


def turn_handling(defaults: TurnDefaults, turn: TurnTaking = NO_OVERRIDES) -> TurnHandlingOptions:
    """`transcript`: the caller's words decide (pipelines/turn_detector.py) after the VAD's end of speech; `model`:
    LiveKit's local audio end-of-turn model (v1-mini, never LiveKit Cloud); `vad`/`stt`: endpointing only. The
    agent's own settings win over the defaults; a max delay below the min delay is raised to it."""
    mode = defaults.mode
    detection: Any = mode
    if mode == "transcript":
        detection = TranscriptTurnDetector()
    elif mode == "model":
        detection = inference.TurnDetector(version="v1-mini", local_fallback=True)
    min_delay = defaults.min_delay_for(turn)
    max_delay = max(min_delay, _given(turn.max_endpointing_delay, defaults.max_delay))
    # VAD-based barge-in: the adaptive detector is a cloud model. In `stt` mode the STT ends the turn while the VAD, a
    # few frames behind, is still inside the caller's speech: its stale "speaking" then cut the fresh reply before it
    # played (2 to 9 of 120 turns unanswered in the bench). There a barge-in also needs a word, whatever the agent
    # says; so does it when the agent has backchannel words (they are dropped from the transcript while it speaks,
    # and a barge-in by the VAD's speech alone would still stop it on a "mhm").
    min_words = _given(turn.interruption_min_words, 0)
    if mode == "stt" or turn.backchannel_words:
        min_words = max(1, min_words)
    return {
        "turn_detection": detection,
        "endpointing": {"min_delay": min_delay, "max_delay": max_delay},
        "interruption": {
            "enabled": True,
            "mode": "vad",
            "min_duration": _given(turn.interruption_min_duration, defaults.interruption_min_duration),
            "min_words": min_words,
        },
        "preemptive_generation": {
            "enabled": _given(turn.preemptive_generation, defaults.preemptive_generation),
            "preemptive_tts": False,
        },
    }


def _given(value: Any, default: Any) -> Any:
    return default if value is None else value


def vad_min_silence(min_delay: float) -> float:
    """The VAD's end-of-speech silence: no longer than `min_delay` (the turn cannot end before the VAD says the
    caller stopped, so silero's 0.55 s default would be the floor of every turn), and never under 0.2 s, which
    would cut speech at every short pause."""
    return min(0.55, max(0.2, min_delay))


class InlineExecutor(futures.Executor):
    """Runs each call at once in the calling thread. The native VAD's inference of a 32 ms window takes ~0.1 ms:
    handing it to a thread and back every window costs more than the work (bench/README.md, cores)."""

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> futures.Future[Any]:
        done: futures.Future[Any] = futures.Future()
        try:
            done.set_result(fn(*args, **kwargs))
        except BaseException as e:  # handed to the awaiting coroutine, as a pool would
            done.set_exception(e)
        return done


INLINE = InlineExecutor()


def native_vad(min_silence: float, *, inline: bool = True) -> vad.VAD:
    """LiveKit's native VAD; `inline`: each window's inference on the call's loop, else in the stream's own thread."""
    return inference.VAD(min_silence_duration=min_silence, executor=INLINE if inline else None)


class _InlineInference:
    """Stands in for a silero stream's event loop, which the stream reads only to run each 32 ms window's onnx
    inference in the loop's default thread pool (`self._loop.run_in_executor(None, self._model, ...)` in the plugin's
    `_main_task`). Here the inference runs at once on the call's loop (~0.16 ms of CPU a window on a 2 vCPU EPYC):
    no hop to a pool thread and back through the loop's self-pipe, 31 times a second per call, which cost about as
    much CPU as the inference (bench/README.md, section 6c: 8.9 against 16.4 CPU-ms per call-second). Everything else
    is the loop's. Upstream, an `executor` argument
    to silero's `VAD` (LiveKit's native VAD has one) would remove this."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop

    def run_in_executor(self, executor: Any, fn: Callable[..., Any], *args: Any) -> asyncio.Future[Any]:
        done = self._loop.create_future()
        try:
            done.set_result(fn(*args))
        except BaseException as e:  # handed to the awaiting coroutine, as the pool would
            done.set_exception(e)
        return done

    def __getattr__(self, name: str) -> Any:
        return getattr(self._loop, name)


class SileroVAD(silero.VAD):
    """livekit-plugins-silero's VAD whose streams run their inference inline (`_InlineInference`)."""

    def stream(self) -> silero.VADStream:
        stream = super().stream()
        loop = getattr(stream, "_loop", None)
        if isinstance(loop, asyncio.AbstractEventLoop):
            stream._loop = _InlineInference(loop)  # type: ignore[assignment]
        return stream


# Imported by a call's first reply, not before: the session's toolsets, the async backend of google-genai's HTTP
# client and a grpc helper it pulls in (found by diffing sys.modules after the prewarm and after a first reply).
_FIRST_REPLY_MODULES = ("livekit.agents.llm.async_toolset", "anyio._backends._asyncio", "grpc._utilities")


def prewarm_first_reply() -> None:
    """What a call's first reply would otherwise import or build on its event loop: up to ~70 ms of imports, the
    transcript synchronizer's hyphenation table (~27 ms, built on its first word) and LiveKit's chat models (pydantic
    builds `ChatMessage` at its first instance, the session's instructions at job start: 2-6 ms on a quiet machine,
    the loop monitor's 35-51 ms block in pydantic at a busy job start). For a job process's prewarm.

    Pydantic also asks, at a model's first instance, whether each private attribute's default factory takes the
    validated data, and keeps the answer. For `AgentConfigUpdate` (made as the session starts) the factory is the
    builtin `list`, whose signature `inspect` parses from its text after copying `sys.modules`: in a job process
    forked from the forkserver that copy writes the reference count of every module object (~3,200) and so copies
    each page they share with the forkserver (11 ms of a 34 ms loop iteration in a profiled job start). Asked here, the
    answer is kept in the forkserver's own models (upstream: pydantic caching it at class build, or LiveKit's
    models using `Field`/`default_factory=lambda: []` where a builtin's signature is not parsed)."""
    for name in _FIRST_REPLY_MODULES:
        with contextlib.suppress(ImportError):
            importlib.import_module(name)
    tokenize.basic.hyphenate_word("prewarm")
    for model in chat_models():
        if not model.__pydantic_complete__:
            model.model_rebuild()
        for private in model.__private_attributes__.values():
            private.default_factory_takes_validated_data  # noqa: B018 (pydantic keeps the answer)


def chat_models() -> list[type[BaseModel]]:
    """The pydantic models of LiveKit's chat context, every call's messages."""
    return [
        m
        for m in vars(chat_context).values()
        if isinstance(m, type) and issubclass(m, BaseModel) and m.__module__ == chat_context.__name__
    ]


def load_vad(engine: str, min_delay: float, *, inline: bool = True) -> vad.VAD:
    """The job process's VAD (its prewarm loads it once), ending speech after `vad_min_silence(min_delay)`, its
    inference on the call's loop (`inline`) or, as LiveKit runs it, in a thread."""
    silence = vad_min_silence(min_delay)
    if engine == "native":
        return native_vad(silence, inline=inline)
    return (SileroVAD if inline else silero.VAD).load(min_silence_duration=silence)


def call_vad(shared: vad.VAD, min_delay: float) -> vad.VAD:
    """The VAD for a call whose turns end after `min_delay`: the process's own (loaded by the prewarm) when its
    end-of-speech silence fits, else one with the call's silence on the same model (no second model in memory).
    The native engine's model is a process-wide singleton, so a new `inference.VAD` costs nothing; for the onnx one
    this reads silero's `_onnx_session` and `_opts`: its `VAD` has no public copy-with-options (an upstream
    `VAD.with_options(...)` would remove that). The call's VAD runs its inference where the process's does."""
    wanted = vad_min_silence(min_delay)
    if isinstance(shared, inference.VAD):
        if shared.min_silence_duration == wanted:
            return shared
        return native_vad(wanted, inline=getattr(shared, "_executor", None) is INLINE)
    opts = getattr(shared, "_opts", None)
    if not isinstance(shared, silero.VAD) or opts is None or shared.min_silence_duration == wanted:
        return shared
    return type(shared)(session=shared._onnx_session, opts=dataclasses.replace(opts, min_silence_duration=wanted))


def build_session(
    pipeline: Pipeline,
    *,
    vad_model: vad.VAD,
    defaults: TurnDefaults,
    turn: TurnTaking = NO_OVERRIDES,
    **kwargs: Any,
) -> AgentSession[Any]:
    return AgentSession(
        stt=pipeline.stt,
        llm=pipeline.llm,
        tts=pipeline.tts,
        vad=vad_model,
        turn_handling=turn_handling(defaults, turn),
        conn_options=SessionConnectOptions(
            stt_conn_options=STT_CONNECT,
            llm_conn_options=CONNECT,
            tts_conn_options=CONNECT,
            # The framework would close the session on the first unrecoverable error, in silence. The job handles
            # it instead (worker/entrypoint.py): the agent apologises through the TTS if it still works, then hangs up.
            max_unrecoverable_errors=UNLIMITED_ERRORS,
        ),
        **kwargs,
    )


_NOT_WORDS = re.compile(r"[^\w\s']+")


def backchannel_matcher(words: tuple[str, ...]) -> Callable[[str], bool] | None:
    """Whether a transcript is nothing but the agent's backchannel words ("Mhm.", "yeah, yeah", "uh huh"): case and
    punctuation ignored, a phrase matched whole. None when the agent has none."""
    phrases = sorted({" ".join(w.lower().split()) for w in words if w.strip()}, key=len, reverse=True)
    if not phrases:
        return None
    alternatives = "|".join(re.escape(p) for p in phrases)
    pattern = re.compile(rf"(?:(?:{alternatives})(?:\s+|$))+")

    def only_backchannel(text: str) -> bool:
        spoken = " ".join(_NOT_WORDS.sub(" ", text.lower()).split())
        return bool(spoken) and pattern.fullmatch(spoken) is not None

    return only_backchannel


_TRANSCRIPTS = (
    stt_base.SpeechEventType.INTERIM_TRANSCRIPT,
    stt_base.SpeechEventType.PREFLIGHT_TRANSCRIPT,
    stt_base.SpeechEventType.FINAL_TRANSCRIPT,
)


class VoiceAgent(Agent):
    """The agent as configured in the store: its system prompt and its greeting when it speaks first. Its pipeline
    nodes are LiveKit's own, passed through, with a `TurnClock` marking each hop of every reply on the way."""

    def __init__(
        self,
        spec: AgentSpec,
        *,
        tools: Sequence[llm_base.Tool] = (),
        before_first_word: Callable[[AgentSession[Any]], Awaitable[None]] | None = None,
        audio_ready: Callable[[AgentSession[Any]], Awaitable[None]] | None = None,
    ) -> None:
        super().__init__(instructions=spec.system_prompt or "You are a helpful voice assistant.", tools=list(tools))
        self.spec = spec
        self.clock = TurnClock()
        self.backchannel = backchannel_matcher(spec.turn_taking.backchannel_words)
        # runs as the agent enters instead of its greeting, which it says with `greet` (voicemail detection: once
        # a person answered)
        self.before_first_word = before_first_word
        self.greets_first = spec.first_message_mode == "assistant_speaks_first" and bool(spec.first_message)
        self.greeting: SpeechHandle | None = None
        # runs first as the agent enters, once the session's audio input and output are in place (the recording
        # wraps them there, before a word is said or heard)
        self.audio_ready = audio_ready
        self.notice: SpeechHandle | None = None
        # set as the call ends (`stop_replying`): from then on no turn is answered and no LLM request is made
        self.ended = False

    async def on_enter(self) -> None:
        self.session.on("agent_state_changed", self._on_agent_state)
        if self.audio_ready is not None:
            await self.audio_ready(self.session)
        if self.before_first_word is not None:
            await self.before_first_word(self.session)
        else:
            self.greet()

    def greet(self) -> None:
        """The recording notice first, when the call is recorded (once, heard whole: it is the caller's consent),
        then the agent's greeting, when it speaks first (once). Held back until a person answered (voicemail
        detection), they are their answer and heard whole: the end of the callee's "Hello?" would interrupt them."""
        if self.spec.recording and self.spec.recording_notice and self.notice is None:
            self.notice = self.session.say(self.spec.recording_notice, allow_interruptions=False)
        if self.greets_first and self.spec.first_message and self.greeting is None:
            held = self.before_first_word is not None
            self.greeting = self.session.say(self.spec.first_message, allow_interruptions=not held)

    def _on_agent_state(self, ev: AgentStateChangedEvent) -> None:
        if ev.new_state == "speaking":  # the first frame of the reply went out to the room
            self.clock.mark("published")

    def stop_replying(self) -> None:
        """The call has ended: a turn still heard (an STT final of audio already sent), or the reply LiveKit starts
        after a tool returns (a transfer's), is not answered. Between the end and the session's close the job
        hangs up and shuts down; an LLM request there would cost tokens for a call already over, and the apology
        and the goodbye, said before the end, are not LLM replies."""
        self.ended = True

    async def on_user_turn_completed(self, turn_ctx: llm_base.ChatContext, new_message: llm_base.ChatMessage) -> None:
        if self.ended:
            raise StopResponse()
        if self.before_first_word is not None and self.greets_first and not (self.greeting and self.greeting.done()):
            # a greeting held back (voicemail detection) answers the callee's first words ("Hello?"): no second
            # reply on top of it; the words stay in the conversation
            raise StopResponse()
        self.clock.end_of_turn()

    async def stt_node(
        self, audio: AsyncIterable[rtc.AudioFrame], model_settings: ModelSettings
    ) -> AsyncIterator[stt_base.SpeechEvent]:
        clock, backchannel = self.clock, self.backchannel

        async def tapped() -> AsyncIterator[rtc.AudioFrame]:
            async for frame in audio:
                clock.input_frame(frame.data, frame.sample_rate)
                yield frame

        try:
            async for ev in Agent.default.stt_node(self, tapped(), model_settings):
                if backchannel is not None and self._backchannel_while_speaking(ev, backchannel):
                    continue
                if isinstance(ev, stt_base.SpeechEvent) and ev.type == stt_base.SpeechEventType.FINAL_TRANSCRIPT:
                    clock.stt_final()
                yield ev
        except APIError as e:
            # The stream's retries are spent and the session has the error as unrecoverable: the job ends the call
            # on it. Raising would make LiveKit's STT pump rebuild the stream every 0.5 s until then, each round with
            # fresh attempts and a traceback (30 attempts and 60 tracebacks during one apology); ending the node
            # ends the pump.
            log.error("STT failed for good, not reconnecting: %s", e, exc_info=e)

    def _backchannel_while_speaking(self, ev: Any, only_backchannel: Callable[[str], bool]) -> bool:
        """A transcript of nothing but backchannel words heard while the agent speaks: dropped, so it neither
        interrupts (barge-in needs a word then) nor becomes a turn of its own. Heard while the agent is silent it is
        an answer ("yeah") and goes through."""
        if not isinstance(ev, stt_base.SpeechEvent) or not ev.alternatives or self.session.agent_state != "speaking":
            return False
        if ev.type not in _TRANSCRIPTS:
            return False
        if only_backchannel(ev.alternatives[0].text):
            log.debug("backchannel while speaking, not an interruption: %r", ev.alternatives[0].text)
            return True
        return False

    async def llm_node(
        self, chat_ctx: llm_base.ChatContext, tools: list[llm_base.Tool], model_settings: ModelSettings
    ) -> AsyncIterator[Any]:
        if self.ended:
            log.info("the call has ended: no reply, no LLM request")
            return
        self.clock.llm_request()
        async for chunk in Agent.default.llm_node(self, chat_ctx, tools, model_settings):
            if chunk if isinstance(chunk, str) else getattr(getattr(chunk, "delta", None), "content", None):
                self.clock.mark("llm_first_token")
            yield chunk

    async def tts_node(self, text: AsyncIterable[str], model_settings: ModelSettings) -> AsyncIterator[rtc.AudioFrame]:
        clock = self.clock

        async def watched() -> AsyncIterator[str]:
            async for chunk in text:
                if chunk:
                    clock.mark("tts_first_text")
                yield chunk

        async for frame in Agent.default.tts_node(self, watched(), model_settings):
            clock.mark("tts_first_audio")
            yield frame
