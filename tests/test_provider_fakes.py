"""The fake providers drive the REAL livekit plugins: each test points an unmodified plugin at
`tests.fakes` and checks both what the plugin got back and what the fake counted."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
from livekit.agents import APIConnectOptions, APIError, APIStatusError, llm, stt
from livekit.agents.utils import http_context
from livekit.plugins import assemblyai, deepgram, elevenlabs, google, resemble
from livekit.plugins.resemble import tts as resemble_tts
from pydantic import BaseModel

from pipelines import registry
from pipelines.config import AgentSpec, ProviderCredentials, ProvidersConfig
from tests.fakes import FakeProviders
from tests.fakes.drive import collect_audio, collect_events, final_texts, pcm_pattern, push_pcm
from tests.fakes.google_tts import issue_service_account

SR = 16000
NO_RETRY = APIConnectOptions(max_retry=0, timeout=5.0)
REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
async def fakes() -> AsyncIterator[FakeProviders]:
    async with FakeProviders() as running:
        yield running


TWO_UTTERANCES = pcm_pattern(("silence", 0.2), ("speech", 0.6), ("silence", 0.6), ("speech", 0.5), ("silence", 0.5))


# --- STT ------------------------------------------------------------------------------------------


async def test_deepgram_stt_streams_scripted_transcripts(fakes: FakeProviders) -> None:
    fakes.update_script(stt_transcripts=["Hello deepgram.", "Second turn."])
    async with http_context.open():
        plugin = deepgram.STT(base_url=fakes.deepgram_url, api_key=fakes.api_key)
        stream = plugin.stream()
        push_pcm(stream, TWO_UTTERANCES)
        events = await collect_events(stream, 2, until=stt.SpeechEventType.END_OF_SPEECH)
        stream.end_input()  # Finalize + CloseStream; the fake answers Metadata and closes
        counters = await fakes.wait_for(lambda c: c["deepgram"]["closed"] == 1)
        await stream.aclose()

    assert final_texts(events) == ["Hello deepgram.", "Second turn."]
    kinds = [e.type for e in events]
    assert kinds.count(stt.SpeechEventType.START_OF_SPEECH) == 2
    assert kinds.count(stt.SpeechEventType.END_OF_SPEECH) == 2  # speech_final=true ends each turn
    assert stt.SpeechEventType.INTERIM_TRANSCRIPT in kinds
    dg = counters["deepgram"]
    assert dg["connections"] == 1 and dg["utterances"] == 2 and dg["final_transcripts"] == 2
    assert dg["audio_bytes"] == len(TWO_UTTERANCES)
    assert dg["audio_seconds"] == len(TWO_UTTERANCES) / (SR * 2)


async def test_deepgram_final_delay_is_injected(fakes: FakeProviders) -> None:
    fakes.update_script(stt_final_delay_ms=400)
    async with http_context.open():
        stream = deepgram.STT(base_url=fakes.deepgram_url, api_key=fakes.api_key).stream()
        push_pcm(stream, pcm_pattern(("speech", 0.5), ("silence", 0.5)))
        arrivals: dict[stt.SpeechEventType, float] = {}
        async for ev in stream:
            arrivals.setdefault(ev.type, time.monotonic())
            if ev.type == stt.SpeechEventType.FINAL_TRANSCRIPT:
                assert ev.alternatives[0].text == "hello there"  # the default transcript
                break
        await stream.aclose()
    # The interim goes out at end-of-speech detection; the final waits stt_final_delay_ms.
    gap = arrivals[stt.SpeechEventType.FINAL_TRANSCRIPT] - arrivals[stt.SpeechEventType.INTERIM_TRANSCRIPT]
    assert gap >= 0.35


async def test_assemblyai_stt_streams_scripted_transcripts(fakes: FakeProviders) -> None:
    fakes.update_script(stt_transcripts=["Hello assembly.", "Another one."])
    async with http_context.open():
        stream = assemblyai.STT(base_url=fakes.assemblyai_url, api_key=fakes.api_key).stream()
        push_pcm(stream, TWO_UTTERANCES)
        events = await collect_events(stream, 2, until=stt.SpeechEventType.END_OF_SPEECH)
        stream.end_input()  # Terminate -> Termination -> close
        counters = await fakes.wait_for(lambda c: c["assemblyai"]["closed"] == 1)
        await stream.aclose()

    assert final_texts(events) == ["Hello assembly.", "Another one."]
    assert [e.type for e in events].count(stt.SpeechEventType.END_OF_SPEECH) == 2
    usage = [e.recognition_usage.audio_duration for e in events if e.recognition_usage]
    assert usage and all(d > 0 for d in usage)
    aai = counters["assemblyai"]
    assert aai["audio_bytes"] == len(TWO_UTTERANCES)
    assert aai["final_transcripts"] == 2


async def test_elevenlabs_stt_server_vad_commits(fakes: FakeProviders) -> None:
    fakes.update_script(stt_transcripts=["Scribe heard this."])
    async with http_context.open():
        plugin = elevenlabs.STT(
            model="scribe_v2_realtime",
            server_vad={},
            base_url=fakes.elevenlabs_base_url,
            api_key=fakes.api_key,
        )
        stream = plugin.stream()
        pcm = pcm_pattern(("speech", 0.6), ("silence", 0.5))
        push_pcm(stream, pcm)
        events = await collect_events(stream, 1, until=stt.SpeechEventType.END_OF_SPEECH)
        await fakes.wait_for(lambda c: c["elevenlabs_stt"]["audio_bytes"] == len(pcm))
        await stream.aclose()
    assert final_texts(events) == ["Scribe heard this."]
    assert stt.SpeechEventType.END_OF_SPEECH in [e.type for e in events]  # vad commits end speech


async def test_elevenlabs_stt_manual_commit_on_flush(fakes: FakeProviders) -> None:
    fakes.update_script(stt_transcripts=["Committed by flush."])
    async with http_context.open():
        plugin = elevenlabs.STT(model="scribe_v2_realtime", base_url=fakes.elevenlabs_base_url, api_key=fakes.api_key)
        stream = plugin.stream()
        pcm = pcm_pattern(("speech", 0.6), ("silence", 0.4))
        push_pcm(stream, pcm)
        # manual commit_strategy: only partials ("Committed by", then the full text) until the
        # client commits
        partials = await collect_events(stream, 2, until=stt.SpeechEventType.INTERIM_TRANSCRIPT)
        assert final_texts(partials) == []
        stream.flush()
        events = await collect_events(stream, 1)
        await fakes.wait_for(lambda c: c["elevenlabs_stt"]["audio_bytes"] == len(pcm))
        await stream.aclose()
    assert partials[-1].alternatives[0].text == "Committed by flush."
    assert final_texts(events) == ["Committed by flush."]


# --- LLM ------------------------------------------------------------------------------------------


@pytest.fixture
def gemini_env(fakes: FakeProviders, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GOOGLE_GEMINI_BASE_URL", fakes.gemini_base_url)
    for var in ("GOOGLE_GENAI_USE_VERTEXAI", "GOOGLE_CLOUD_PROJECT", "GOOGLE_GENAI_API_VERSION"):
        monkeypatch.delenv(var, raising=False)


def chat_ctx() -> llm.ChatContext:
    ctx = llm.ChatContext.empty()
    ctx.add_message(role="system", content="You are a terse test agent.")  # 6 words
    ctx.add_message(role="user", content="say something nice please")  # 4 words
    return ctx


async def run_chat(model: google.LLM, **kwargs: object) -> tuple[str, llm.CompletionUsage | None]:
    text, usage = "", None
    async with model.chat(chat_ctx=chat_ctx(), **kwargs) as stream:  # type: ignore[arg-type]
        async for chunk in stream:
            if chunk.delta and chunk.delta.content:
                text += chunk.delta.content
            if chunk.usage:
                usage = chunk.usage
    return text, usage


async def test_gemini_llm_streams_scripted_replies_with_usage(fakes: FakeProviders, gemini_env: None) -> None:
    fakes.update_script(llm_replies=["Hello from the fake Gemini model."], llm_first_token_delay_ms=200)
    model = google.LLM(model="gemini-2.5-flash", api_key=fakes.api_key)
    async with http_context.open():
        model.prewarm()  # GET /v1/models?pageSize=1, as AgentSession does at start
        await fakes.wait_for(lambda c: c["gemini"]["model_list_requests"] == 1)
        started = time.monotonic()
        text, usage = await run_chat(model)
        elapsed = time.monotonic() - started
        second, _ = await run_chat(model)
        await model.aclose()

    assert text == "Hello from the fake Gemini model."
    assert second == "This is a scripted reply."  # queue exhausted -> default
    assert elapsed >= 0.2
    assert usage is not None
    assert (usage.prompt_tokens, usage.completion_tokens) == (10, 6)
    g = fakes.counters()["gemini"]
    assert g["requests"] == g["completed"] == 2
    assert g["prompt_tokens"] == 20 and g["completion_tokens"] == 6 + 5
    assert g["total_tokens"] == g["prompt_tokens"] + g["completion_tokens"]


class Analysis(BaseModel):
    sentiment: str
    score: int


async def test_gemini_structured_output_invalid_then_valid(fakes: FakeProviders, gemini_env: None) -> None:
    fakes.update_script(llm_json_replies=["{not json", {"sentiment": "positive", "score": 4}])
    model = google.LLM(model="gemini-2.5-flash", api_key=fakes.api_key)
    async with http_context.open():
        first, _ = await run_chat(model, response_format=Analysis)
        second, _ = await run_chat(model, response_format=Analysis)
        await model.aclose()
    assert first == "{not json"  # sent verbatim, so the caller's parse/retry path is exercised
    with pytest.raises(ValueError):
        Analysis.model_validate_json(first)
    assert Analysis.model_validate_json(second) == Analysis(sentiment="positive", score=4)
    assert fakes.counters()["gemini"]["json_requests"] == 2
    assert fakes.state.log["gemini"][-1]["request"]["generationConfig"]["responseMimeType"] == "application/json"


# --- TTS ------------------------------------------------------------------------------------------


async def test_elevenlabs_tts_stream_pcm(fakes: FakeProviders) -> None:
    text = "Hello world. How are you today?"
    async with http_context.open():
        plugin = elevenlabs.TTS(base_url=fakes.elevenlabs_base_url, api_key=fakes.api_key, encoding="pcm_16000")
        metrics: list[object] = []
        plugin.on("metrics_collected", metrics.append)
        stream = plugin.stream()
        stream.push_text(text)
        stream.end_input()
        frames = await collect_audio(stream)
        await stream.aclose()
        await plugin.aclose()

    assert frames and all(f.sample_rate == 16000 for f in frames)
    audio_s = sum(f.duration for f in frames)
    el = fakes.counters()["elevenlabs_tts"]
    assert el["requests"] == 1 and el["connections"] == 1
    # The plugin re-tokenizes into sentences ("Hello world. " + "How are you today? "), so only
    # the non-blank characters match what it reports as characters_count (= len(pushed text)).
    assert el["characters_nonspace"] == len(text.replace(" ", ""))
    assert metrics and metrics[0].characters_count == len(text)  # type: ignore[attr-defined]
    assert audio_s == pytest.approx(el["audio_seconds_out"], abs=0.05)


async def test_elevenlabs_tts_synthesize_mp3(fakes: FakeProviders) -> None:
    text = "Synthesized in one request."
    async with http_context.open():
        plugin = elevenlabs.TTS(base_url=fakes.elevenlabs_base_url, api_key=fakes.api_key)  # mp3 default
        frames = await collect_audio(plugin.synthesize(text))
        await plugin.aclose()
    assert sum(f.duration for f in frames) > 1.0
    el = fakes.counters()["elevenlabs_tts"]
    assert el["characters"] == len(text) and el["requests"] == 1


async def test_resemble_stream_decodes_real_mp3(fakes: FakeProviders, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(resemble_tts, "RESEMBLE_WEBSOCKET_URL", fakes.resemble_ws_url)
    fakes.update_script(tts_first_byte_delay_ms=100)
    text = "First sentence here. Second one follows."
    async with http_context.open():
        plugin = resemble.TTS(api_key=fakes.api_key, sample_rate=24000)
        stream = plugin.stream()
        stream.push_text(text)
        stream.end_input()
        frames = await collect_audio(stream)
        await plugin.aclose()
    rs = fakes.counters()["resemble"]
    assert rs["requests"] == 2  # one per sentence
    assert rs["characters_nonspace"] == len(text.replace(" ", ""))
    audio_s = sum(f.duration for f in frames)
    assert frames[0].sample_rate == 24000
    # MP3 adds encoder padding, so decoded audio is a little longer than nominal.
    assert rs["audio_seconds_out"] <= audio_s <= rs["audio_seconds_out"] + 0.3


async def test_resemble_rest_synthesize(fakes: FakeProviders, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(resemble_tts, "RESEMBLE_REST_API_URL", fakes.resemble_rest_url)
    text = "Short REST synthesis."
    async with http_context.open():
        plugin = resemble.TTS(api_key=fakes.api_key, use_streaming=False, sample_rate=16000)
        frames = await collect_audio(plugin.synthesize(text))
        await plugin.aclose()
    assert sum(f.duration for f in frames) == pytest.approx(fakes.counters()["resemble"]["audio_seconds_out"], abs=0.02)
    assert fakes.counters()["resemble"]["characters"] == len(text)


# --- Google Cloud TTS (gRPC over TLS, service-account JWT) ------------------------------------------


@pytest.fixture
def google_config(fakes: FakeProviders, monkeypatch: pytest.MonkeyPatch) -> ProvidersConfig:
    # gRPC reads its roots once per process; every fake in this process presents the same certificate.
    monkeypatch.setenv("GRPC_DEFAULT_SSL_ROOTS_FILE_PATH", fakes.google_tts_ca_file)
    return ProvidersConfig(
        google=ProviderCredentials(
            extra={
                "credentials_file": fakes.google_credentials_file,
                "tts_endpoint": fakes.google_tts_endpoint,
            }
        )
    )


GOOGLE_AGENT = AgentSpec(
    id="a",
    name="a",
    system_prompt="",
    stt_provider="deepgram",
    llm_provider="gemini",
    tts_provider="google",
    language="en-GB",
)


async def test_google_tts_built_from_a_credentials_file_streams_from_the_fake(
    fakes: FakeProviders, google_config: ProvidersConfig
) -> None:
    text = "Hello from Google. This is the second sentence, a little longer than the first."
    async with http_context.open():
        plugin = registry.builder("tts", "google")(GOOGLE_AGENT, google_config)
        stream = plugin.stream()  # type: ignore[attr-defined]
        stream.push_text(text)
        stream.end_input()
        frames = await collect_audio(stream)
        await plugin.aclose()  # type: ignore[attr-defined]
    g = fakes.counters()["google_tts"]
    assert g["connections"] == g["requests"] == 1 and g["auth_failures"] == 0
    assert g["characters_nonspace"] == len(text.replace(" ", ""))
    assert frames[0].sample_rate == 24000
    assert sum(f.duration for f in frames) == pytest.approx(g["audio_seconds_out"], abs=0.01)
    config, *inputs = fakes.state.log["google_tts"]
    assert config["streaming_config"]["voice"]["language_code"] == "en-GB"
    assert "".join(i["input"] for i in inputs).replace(" ", "") == text.replace(" ", "")


async def test_google_tts_synthesize_is_one_unary_call(fakes: FakeProviders, google_config: ProvidersConfig) -> None:
    text = "One request, one answer."
    async with http_context.open():
        plugin = registry.builder("tts", "google")(GOOGLE_AGENT, google_config)
        frames = await collect_audio(plugin.synthesize(text))  # type: ignore[attr-defined]
        await plugin.aclose()  # type: ignore[attr-defined]
    g = fakes.counters()["google_tts"]
    assert g["requests"] == 1 and g["characters"] == len(text)
    assert sum(f.duration for f in frames) == pytest.approx(g["audio_seconds_out"], abs=0.01)


async def test_google_tts_refuses_a_service_account_it_did_not_issue(
    fakes: FakeProviders, google_config: ProvidersConfig, tmp_path: Path
) -> None:
    stranger = tmp_path / "stranger.json"
    stranger.write_text(json.dumps(issue_service_account(token_uri=f"{fakes.base_url}/token").info))
    extra = {**google_config.google.extra, "credentials_file": str(stranger)}
    cfg = ProvidersConfig(google=ProviderCredentials(extra=extra))
    async with http_context.open():
        plugin = registry.builder("tts", "google")(GOOGLE_AGENT, cfg)
        with pytest.raises(APIStatusError) as err:
            await collect_audio(plugin.synthesize("hi", conn_options=NO_RETRY))  # type: ignore[attr-defined]
        await plugin.aclose()  # type: ignore[attr-defined]
    # google-api-core maps gRPC UNAUTHENTICATED to HTTP 401: not retried
    assert err.value.status_code == 401 and not err.value.retryable
    assert fakes.counters()["google_tts"]["auth_failures"] == 1


async def test_google_tts_failure_switches_answer_grpc_errors(
    fakes: FakeProviders, google_config: ProvidersConfig
) -> None:
    fakes.fail("google_tts", "reject", times=1)
    async with http_context.open():
        plugin = registry.builder("tts", "google")(GOOGLE_AGENT, google_config)
        with pytest.raises(APIStatusError) as err:
            await collect_audio(plugin.synthesize("hi", conn_options=NO_RETRY))  # type: ignore[attr-defined]
        assert err.value.status_code == 500  # INTERNAL
        fakes.fail("google_tts", "drop", times=1)
        stream = plugin.stream(conn_options=NO_RETRY)  # type: ignore[attr-defined]
        stream.push_text("Nobody hears this.")
        stream.end_input()
        with pytest.raises(APIError):
            await collect_audio(stream)
        recovered = await collect_audio(plugin.synthesize("Back again."))  # type: ignore[attr-defined]
        await plugin.aclose()  # type: ignore[attr-defined]
    assert recovered
    g = fakes.counters()["google_tts"]
    assert g["injected_failures"] == 2 and g["characters"] == len("Back again.")


# --- auth and failure injection -------------------------------------------------------------------


async def test_bad_keys_fail_fast(fakes: FakeProviders, gemini_env: None, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(resemble_tts, "RESEMBLE_REST_API_URL", fakes.resemble_rest_url)
    started = time.monotonic()
    async with http_context.open():
        dg = deepgram.STT(base_url=fakes.deepgram_url, api_key="wrong").stream()
        push_pcm(dg, pcm_pattern(("silence", 0.1)))
        with pytest.raises(APIStatusError) as dg_err:
            await collect_events(dg, 1)
        assert dg_err.value.status_code == 401

        model = google.LLM(model="gemini-2.5-flash", api_key="wrong")
        with pytest.raises(APIStatusError) as g_err:
            await run_chat(model)
        assert g_err.value.status_code == 400
        await model.aclose()

        el = elevenlabs.TTS(base_url=fakes.elevenlabs_base_url, api_key="wrong", encoding="pcm_16000")
        with pytest.raises(APIStatusError):
            await collect_audio(el.synthesize("hi"))
        await el.aclose()

        rs = resemble.TTS(api_key="wrong", use_streaming=False)
        with pytest.raises(APIStatusError):
            await collect_audio(rs.synthesize("hi"))

        scribe = elevenlabs.STT(model="scribe_v2_realtime", base_url=fakes.elevenlabs_base_url, api_key="wrong")
        s_stream = scribe.stream()
        push_pcm(s_stream, pcm_pattern(("silence", 0.1)))
        with pytest.raises(APIError):
            await collect_events(s_stream, 1)

        aai = assemblyai.STT(base_url=fakes.assemblyai_url, api_key="wrong").stream(conn_options=NO_RETRY)
        push_pcm(aai, pcm_pattern(("silence", 0.1)))
        with pytest.raises(APIStatusError) as a_err:
            await collect_events(aai, 1)
        assert a_err.value.status_code == 1008
    assert time.monotonic() - started < 3.0  # none of them retried their way through seconds
    c = fakes.counters()
    for provider in (
        "deepgram",
        "gemini",
        "elevenlabs_tts",
        "resemble",
        "elevenlabs_stt",
        "assemblyai",
    ):
        assert c[provider]["auth_failures"] >= 1, provider


async def test_injected_failures_break_calls(fakes: FakeProviders, gemini_env: None) -> None:
    fakes.fail("gemini", "reject", times=1)
    fakes.fail("deepgram", "drop")
    async with http_context.open():
        model = google.LLM(model="gemini-2.5-flash", api_key=fakes.api_key)
        with pytest.raises(APIStatusError) as err:
            await run_chat(model, conn_options=NO_RETRY)
        assert err.value.status_code == 500
        recovered, _ = await run_chat(model, conn_options=NO_RETRY)  # times=1: next call works
        assert recovered == "This is a scripted reply."
        await model.aclose()

        stream = deepgram.STT(base_url=fakes.deepgram_url, api_key=fakes.api_key).stream(conn_options=NO_RETRY)
        push_pcm(stream, pcm_pattern(("speech", 0.3)))
        with pytest.raises(APIError):
            await collect_events(stream, 1)
    c = fakes.counters()
    assert c["gemini"]["injected_failures"] == 1 and c["deepgram"]["injected_failures"] == 1


async def test_hanging_providers_hit_client_timeouts(fakes: FakeProviders, gemini_env: None) -> None:
    fakes.fail("gemini", "hang")
    fakes.fail("elevenlabs_tts", "hang")
    quick = APIConnectOptions(max_retry=0, timeout=0.5)
    started = time.monotonic()
    async with http_context.open():
        model = google.LLM(model="gemini-2.5-flash", api_key=fakes.api_key)
        with pytest.raises(APIError):
            await run_chat(model, conn_options=quick)
        await model.aclose()

        plugin = elevenlabs.TTS(base_url=fakes.elevenlabs_base_url, api_key=fakes.api_key, encoding="pcm_16000")
        stream = plugin.stream(conn_options=quick)
        stream.push_text("Nobody answers.")
        stream.end_input()
        with pytest.raises(APIError):
            await collect_audio(stream)
        await plugin.aclose()
    # The fixture's stop() then releases the parked handlers at once (see the test's runtime).
    assert time.monotonic() - started < 3.0


# --- standalone process ---------------------------------------------------------------------------


async def test_standalone_process_serves_counters_and_scripts(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    script = tmp_path / "script.json"
    script.write_text(json.dumps({"llm_replies": ["from the file"]}))
    cmd = [sys.executable, "-m", "tests.fakes", "--port", "0", "--script", str(script)]
    proc = subprocess.Popen([*cmd, "--api-key", "k"], cwd=REPO, stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        ready = json.loads(await asyncio.wait_for(asyncio.to_thread(proc.stdout.readline), 15))
        base = ready["urls"]["base_url"]
        monkeypatch.setenv("GOOGLE_GEMINI_BASE_URL", ready["urls"]["gemini_base_url"])
        async with aiohttp.ClientSession() as http:
            async with http.get(f"{base}/_fake/script") as r:
                assert (await r.json())["llm_replies"] == ["from the file"]
            async with http.post(f"{base}/_fake/script", json={"llm_replies": ["over http"]}) as r:
                assert r.status == 200
            async with http.post(f"{base}/_fake/script", json={"no_such_field": 1}) as r:
                assert r.status == 400
            async with http_context.open():
                model = google.LLM(model="gemini-2.5-flash", api_key="k")
                text, usage = await run_chat(model)
                await model.aclose()
            async with http.get(f"{base}/_fake/counters") as r:
                counters = await r.json()
    finally:
        proc.terminate()
        proc.wait(timeout=10)
    assert text == "over http"
    assert usage is not None and (usage.prompt_tokens, usage.completion_tokens) == (10, 2)
    assert counters["gemini"]["prompt_tokens"] == 10 and counters["gemini"]["completed"] == 1
    assert proc.returncode == 0  # SIGTERM is a clean shutdown
