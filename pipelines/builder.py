"""Builds an agent's STT -> LLM -> TTS session from its spec, with local VAD and turn detection only."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any, AsyncGenerator, AsyncIterable, Callable

from livekit import rtc
from livekit.agents import Agent, AgentSession, APIConnectOptions, ModelSettings, inference, vad
from livekit.agents import llm as llm_base
from livekit.agents import stt as stt_base
from livekit.agents import tts as tts_base
from livekit.agents.voice.agent_session import SessionConnectOptions

from .config import AgentSpec, ProvidersConfig
from .registry import builder

log = logging.getLogger("voxarena.pipeline")

# Fail a broken provider within seconds: a caller waiting in silence is worse than a clean hang-up. One retry per
# request, then the first unrecoverable error (retries exhausted) closes the session with its reason.
CONNECT = APIConnectOptions(max_retry=1, retry_interval=0.5, timeout=8.0)


@dataclass(frozen=True)
class Pipeline:
    stt: stt_base.STT
    llm: llm_base.LLM
    tts: tts_base.TTS


def build_pipeline(agent: AgentSpec, cfg: ProvidersConfig) -> Pipeline:
    """Build the three providers; raises ProviderConfigError before any audio flows if one cannot be built."""
    return Pipeline(
        stt=builder("stt", agent.stt_provider)(agent, cfg),  # type: ignore[arg-type]
        llm=builder("llm", agent.llm_provider)(agent, cfg),  # type: ignore[arg-type]
        tts=builder("tts", agent.tts_provider)(agent, cfg),  # type: ignore[arg-type]
    )


def turn_handling(mode: str, *, min_delay: float = 0.4, max_delay: float = 3.0) -> dict[str, Any]:
    """`model`: the local end-of-turn model (v1-mini, never LiveKit Cloud); `vad`/`stt`: endpointing only."""
    detection: Any = inference.TurnDetector(version="v1-mini", local_fallback=True) if mode == "model" else mode
    return {
        "turn_detection": detection,
        "endpointing": {"min_delay": min_delay, "max_delay": max_delay},
        # VAD-based barge-in: the adaptive detector is a cloud model.
        "interruption": {"enabled": True, "mode": "vad", "min_duration": 0.5},
    }


def build_session(pipeline: Pipeline, *, vad_model: vad.VAD, turn_detection: str, min_delay: float = 0.4,
                  max_delay: float = 3.0, **kwargs: Any) -> AgentSession:
    return AgentSession(
        stt=pipeline.stt,
        llm=pipeline.llm,
        tts=pipeline.tts,
        vad=vad_model,
        turn_handling=turn_handling(turn_detection, min_delay=min_delay, max_delay=max_delay),
        conn_options=SessionConnectOptions(
            stt_conn_options=CONNECT, llm_conn_options=CONNECT, tts_conn_options=CONNECT, max_unrecoverable_errors=0
        ),
        **kwargs,
    )


AudioTap = Callable[[int, int], None]


class VoiceAgent(Agent):
    """The agent as configured in the store: its system prompt, its greeting when it speaks first, and a tap on
    the audio its STT node streams to the provider (the meter counts billable STT audio there)."""

    def __init__(self, spec: AgentSpec, *, stt_audio_tap: AudioTap | None = None) -> None:
        super().__init__(instructions=spec.system_prompt or "You are a helpful voice assistant.")
        self.spec = spec
        self._tap = stt_audio_tap

    async def stt_node(self, audio: AsyncIterable[rtc.AudioFrame], model_settings: ModelSettings
                       ) -> AsyncGenerator[stt_base.SpeechEvent, None]:
        tap = self._tap

        async def tapped() -> AsyncGenerator[rtc.AudioFrame, None]:
            async for frame in audio:
                if tap is not None:
                    tap(frame.samples_per_channel, frame.sample_rate)
                yield frame

        async for event in Agent.default.stt_node(self, tapped(), model_settings):
            yield event

    async def on_enter(self) -> None:
        if self.spec.first_message_mode == "assistant_speaks_first" and self.spec.first_message:
            self.session.say(self.spec.first_message)
