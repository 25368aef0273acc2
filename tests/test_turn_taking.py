"""An agent's turn-taking settings (`minEndpointingDelay`, `maxEndpointingDelay`, `interruptionMinWords`,
`interruptionMinDuration`, `backchannelWords`, `preemptiveGeneration`) as LiveKit's session receives them, the VAD a
call gets for its own delay, and backchannel words heard while the agent speaks."""

from __future__ import annotations

import asyncio
import threading
import wave
from types import SimpleNamespace

import pytest
from livekit import rtc
from livekit.agents import inference, stt, vad
from livekit.plugins import silero

from pipelines.builder import (
    SileroVAD,
    TurnDefaults,
    VoiceAgent,
    backchannel_matcher,
    call_vad,
    load_vad,
    turn_handling,
)
from pipelines.config import VAD_ENGINES, AgentSpec, TurnTaking
from pipelines.turn_detector import TranscriptTurnDetector
from tests.harness.audio import speech_wav


def test_without_agent_settings_the_products_defaults_apply():
    handling = turn_handling(TurnDefaults())
    assert isinstance(handling["turn_detection"], TranscriptTurnDetector)
    assert handling["endpointing"] == {"min_delay": 0.4, "max_delay": 3.0}
    assert handling["interruption"]["min_duration"] == 0.5 and handling["interruption"]["min_words"] == 0
    assert handling["preemptive_generation"]["enabled"] is True
    off = turn_handling(TurnDefaults(preemptive_generation=False, min_delay=0.2, max_delay=1.0))
    assert off["preemptive_generation"]["enabled"] is False
    assert off["endpointing"] == {"min_delay": 0.2, "max_delay": 1.0}


def test_an_agents_settings_override_each_default_they_set():
    turn = TurnTaking(
        min_endpointing_delay=0.8,
        max_endpointing_delay=5.0,
        interruption_min_words=3,
        interruption_min_duration=0.25,
        preemptive_generation=False,
    )
    handling = turn_handling(TurnDefaults(), turn)
    assert handling["endpointing"] == {"min_delay": 0.8, "max_delay": 5.0}
    assert handling["interruption"]["min_words"] == 3 and handling["interruption"]["min_duration"] == 0.25
    assert handling["preemptive_generation"]["enabled"] is False
    # only the min given, above the product's max: the max rises to it rather than ending turns before min
    handling = turn_handling(TurnDefaults(max_delay=3.0), TurnTaking(min_endpointing_delay=4.0))
    assert handling["endpointing"] == {"min_delay": 4.0, "max_delay": 4.0}
    # an explicit 0 is a setting, not "unset"
    assert turn_handling(TurnDefaults(), TurnTaking(min_endpointing_delay=0.0))["endpointing"]["min_delay"] == 0.0


def test_a_barge_in_needs_a_word_in_stt_mode_and_when_the_agent_has_backchannel_words():
    stt_mode = turn_handling(TurnDefaults(mode="stt"), TurnTaking(interruption_min_words=0))
    assert stt_mode["interruption"]["min_words"] == 1
    with_words = TurnTaking(backchannel_words=("mhm",), interruption_min_words=0)
    assert turn_handling(TurnDefaults(), with_words)["interruption"]["min_words"] == 1
    assert turn_handling(TurnDefaults(mode="vad"))["interruption"]["min_words"] == 0
    assert turn_handling(TurnDefaults(), TurnTaking(interruption_min_words=2))["interruption"]["min_words"] == 2


@pytest.mark.parametrize(
    ("text", "backchannel"),
    [
        ("Mhm.", True),
        ("yeah, yeah", True),
        ("Uh huh", True),
        ("uh-huh", True),  # the way STTs spell "uh huh": punctuation is not a word
        ("right right.", True),
        ("Yeah, but what about Tuesday?", False),
        ("yeahs", False),
        ("huh", False),  # part of a phrase only
        ("", False),
        ("...", False),
    ],
)
def test_a_transcript_is_a_backchannel_only_when_every_word_is_one(text: str, backchannel: bool):
    matches = backchannel_matcher(("mhm", "Yeah", "uh  huh", "right"))
    assert matches is not None and matches(text) is backchannel


def test_no_backchannel_words_no_matcher():
    assert backchannel_matcher(()) is None and backchannel_matcher((" ",)) is None


class _Speaking(VoiceAgent):
    state = "speaking"

    @property
    def session(self):  # the one thing the filter reads from the session
        return SimpleNamespace(agent_state=self.state)


def _event(kind: stt.SpeechEventType, text: str) -> stt.SpeechEvent:
    return stt.SpeechEvent(type=kind, alternatives=[stt.SpeechData(language="en", text=text)])


def test_backchannels_are_dropped_while_the_agent_speaks_and_kept_when_it_listens():
    spec = AgentSpec(
        id="a",
        name="a",
        system_prompt="",
        stt_provider="deepgram",
        llm_provider="gemini",
        tts_provider="elevenlabs",
        turn_taking=TurnTaking(backchannel_words=("mhm", "yeah")),
    )
    agent = _Speaking(spec)
    assert agent.backchannel is not None
    final, interim = stt.SpeechEventType.FINAL_TRANSCRIPT, stt.SpeechEventType.INTERIM_TRANSCRIPT
    drop = agent._backchannel_while_speaking
    assert drop(_event(final, "Mhm."), agent.backchannel) and drop(_event(interim, "yeah"), agent.backchannel)
    assert not drop(_event(final, "Yeah, stop please."), agent.backchannel)
    assert not drop(stt.SpeechEvent(type=stt.SpeechEventType.START_OF_SPEECH), agent.backchannel)
    agent.state = "listening"  # an answer, not a backchannel
    assert not drop(_event(final, "Yeah."), agent.backchannel)
    plain = VoiceAgent(
        AgentSpec(id="b", name="b", system_prompt="", stt_provider="deepgram", llm_provider="gemini", tts_provider="x")
    )
    assert plain.backchannel is None


def test_a_call_with_its_own_delay_gets_a_vad_with_that_silence_on_the_same_model():
    shared = silero.VAD.load(min_silence_duration=0.4)
    assert call_vad(shared, 0.4) is shared and call_vad(shared, 0.45) is not shared
    own = call_vad(shared, 0.3)
    assert isinstance(own, silero.VAD) and own.min_silence_duration == 0.3
    assert own._onnx_session is shared._onnx_session  # one model in memory
    assert shared.min_silence_duration == 0.4  # the process's VAD is untouched
    assert call_vad(shared, 2.0).min_silence_duration == 0.55 and call_vad(shared, 0.0).min_silence_duration == 0.2


def test_the_native_engine_shares_livekits_process_wide_model_and_takes_the_calls_silence():
    shared = load_vad("native", 0.4)
    assert isinstance(shared, inference.VAD) and shared.min_silence_duration == 0.4
    assert call_vad(shared, 0.4) is shared
    own = call_vad(shared, 0.3)
    assert isinstance(own, inference.VAD) and own.min_silence_duration == 0.3 and shared.min_silence_duration == 0.4
    assert isinstance(load_vad("onnx", 0.4), silero.VAD)


async def _vad_events(stream: vad.VADStream) -> tuple[list[vad.VADEvent], float]:
    """The VAD's start and end of speech on espeak's "Hello there, how are you today?" and a second of silence after
    it, pushed in 10 ms frames; and the speech's length in seconds."""
    with wave.open(str(speech_wav("Hello there, how are you today?", sample_rate=16_000)), "rb") as w:
        pcm = w.readframes(w.getnframes())
    step = 160 * 2  # 10 ms of int16 at 16 kHz
    audio = pcm + bytes(16_000 * 2)
    for i in range(0, len(audio), step):
        stream.push_frame(rtc.AudioFrame(audio[i : i + step], 16_000, 1, len(audio[i : i + step]) // 2))
    stream.end_input()
    events = [ev async for ev in stream if ev.type != vad.VADEventType.INFERENCE_DONE]
    await stream.aclose()
    return events, len(pcm) / 2 / 16_000


async def test_the_native_vad_runs_inline_and_ends_speech_after_the_calls_silence():
    """The native VAD on the inline executor, on real speech: one start and one end of speech, the end no sooner
    than its silence after the speech, and no thread of its own."""
    threads = {t.name for t in threading.enumerate()}
    events, speech_s = await _vad_events(load_vad("native", 0.3).stream())
    kinds = [ev.type for ev in events]
    assert kinds == [vad.VADEventType.START_OF_SPEECH, vad.VADEventType.END_OF_SPEECH], kinds
    end = events[1]
    assert end.silence_duration >= 0.3 and end.timestamp <= speech_s + 0.8
    assert not any(t.name.startswith("inference.vad") for t in threading.enumerate() if t.name not in threads)


async def test_the_onnx_vad_runs_inline_with_the_same_events_as_in_livekits_thread(monkeypatch):
    """livekit-plugins-silero hands each 32 ms window to the loop's thread pool; the product's stream runs it on the
    loop (`SileroVAD`): no window reaches the pool, and the events are the plugin's own, to the sample. Fails when
    an upgraded plugin runs its inference some other way than through the stream's `_loop`."""
    loop = asyncio.get_running_loop()
    hops = []
    pool = loop.run_in_executor

    def counted(executor, fn, *args):
        hops.append(fn)
        return pool(executor, fn, *args)

    monkeypatch.setattr(loop, "run_in_executor", counted)
    theirs, speech_s = await _vad_events(load_vad("onnx", 0.3, inline=False).stream())
    in_pool = len(hops)
    ours, _ = await _vad_events(load_vad("onnx", 0.3).stream())
    assert in_pool > speech_s / 0.032 and len(hops) == in_pool  # one hop per window theirs, none ours

    def seen(events):
        return [(e.type, e.samples_index, round(e.timestamp, 6), round(e.silence_duration, 6)) for e in events]

    assert [e.type for e in ours] == [vad.VADEventType.START_OF_SPEECH, vad.VADEventType.END_OF_SPEECH]
    assert seen(ours) == seen(theirs)


def test_a_calls_own_vad_runs_its_inference_where_the_processs_does():
    for engine in VAD_ENGINES:
        for inline in (True, False):
            shared = load_vad(engine, 0.4, inline=inline)
            own = call_vad(shared, 0.3)
            assert own is not shared and type(own) is type(shared)
            assert getattr(own, "_executor", None) is getattr(shared, "_executor", None)
    assert isinstance(load_vad("onnx", 0.4), SileroVAD) and type(load_vad("onnx", 0.4, inline=False)) is silero.VAD
