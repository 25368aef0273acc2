"""A job start does not block its event loop: what is slow to build (the TLS context, which loads the CA bundle, for
the Gemini clients and LiveKit's HTTP session) is built once by the job process's prewarm, before any job; building
the call's pipeline on the loop is then quick, as the loop monitor sees it."""

from __future__ import annotations

import asyncio
import inspect
import ssl
import subprocess
import sys
import traceback
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from livekit.agents import llm
from livekit.agents.utils import http_context

from api.loopmon import LoopMonitor
from core.settings import Settings
from pipelines.builder import TurnDefaults, VoiceAgent, build_pipeline, build_session, chat_models
from pipelines.config import AgentSpec, ProviderCredentials, ProvidersConfig
from worker import entrypoint

SPEC = AgentSpec(
    id="a", name="a", system_prompt="", stt_provider="deepgram", llm_provider="gemini", tts_provider="elevenlabs"
)
CONFIG = ProvidersConfig(
    deepgram=ProviderCredentials("k", "http://127.0.0.1:9/v1/listen"),
    google=ProviderCredentials("k", "http://127.0.0.1:9"),
    elevenlabs=ProviderCredentials("k", "http://127.0.0.1:9/v1"),
)
REPO = Path(__file__).resolve().parents[1]
# A job start took 100-206 ms of one blocking stretch (three CA-bundle loads); what is left is a few ms of plain
# construction, with room for a busy 2-core machine.
MAX_BLOCK_MS = 60


async def test_after_prewarm_a_job_builds_its_pipeline_without_blocking_the_loop(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("GOOGLE_GEMINI_BASE_URL", raising=False)
    http_context._ssl_context_for.cache_clear()  # as in a fresh job process
    proc = SimpleNamespace(userdata={})
    entrypoint.prewarm(Settings(data_dir=tmp_path, worker_enabled=False), proc)  # type: ignore[arg-type]
    proc.userdata["store"].close()

    contexts: list[Any] = []
    real = ssl.create_default_context
    monkeypatch.setattr(
        ssl, "create_default_context", lambda *a, **k: contexts.append(traceback.format_stack()) or real(*a, **k)
    )

    monitor = LoopMonitor(interval=0.005)
    monitor.start()
    try:
        while monitor.snapshot()["samples"] < 3:  # the monitor is ticking
            await asyncio.sleep(0.005)
        monitor.reset()
        async with http_context.open():
            pipeline = build_pipeline(SPEC, CONFIG, vad_model=proc.userdata["vad"])
            build_session(pipeline, vad_model=proc.userdata["vad"], defaults=TurnDefaults())
            while monitor.snapshot()["samples"] < 3:  # the wake-ups that were due during the build have fired
                await asyncio.sleep(0.005)
            await pipeline.llm.aclose()
    finally:
        await monitor.stop()

    assert contexts == [], "".join(contexts[0][-8:])  # no CA bundle loaded on the loop (else: where it was)
    assert monitor.snapshot()["lag_max_ms"] < MAX_BLOCK_MS, monitor.snapshot()


async def test_after_prewarm_a_first_reply_imports_and_builds_nothing_on_the_loop(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """What a call's first reply used to import (toolsets, genai's async HTTP backend: ~70 ms) and build (genai's
    pydantic models, ~110 ms; the transcript synchronizer's hyphenation table, ~27 ms) on the job's loop is done by
    the prewarm (and, under the process executor, once in the forkserver): a reply through the real plugins against
    the fakes then imports no module and builds no genai model."""
    from google.genai import types as genai_types
    from pydantic import BaseModel
    from pydantic.fields import _Unset

    from tests.fakes import FakeProviders
    from tests.test_deepgram_endpoint import _config
    from tests.test_stt_refused import Silence

    for model in chat_models():  # as in a fresh process (another test's session has made them)
        for private in model.__private_attributes__.values():
            monkeypatch.setattr(private, "_default_factory_takes_validated_data", _Unset)
    proc = SimpleNamespace(userdata={})
    entrypoint.prewarm(Settings(data_dir=tmp_path, worker_enabled=False), proc)  # type: ignore[arg-type]
    proc.userdata["store"].close()
    models = [m for m in vars(genai_types).values() if isinstance(m, type) and issubclass(m, BaseModel)]
    assert models and all(m.__pydantic_complete__ for m in models)
    # LiveKit's chat models too: the session's first message (its instructions, at job start) built ChatMessage
    chat = chat_models()
    assert llm.ChatMessage in chat and all(m.__pydantic_complete__ for m in chat)
    async with FakeProviders(api_key="k") as fakes:
        monkeypatch.setenv("GOOGLE_GEMINI_BASE_URL", fakes.gemini_base_url)
        cfg = _config(fakes)
        before = set(sys.modules)
        # inspect parses a builtin's signature from its text after copying sys.modules, which in a job process forked
        # from the forkserver copies the pages of every module object (pydantic asked it of `list` at job start)
        parsed: list[str] = []
        fromstr = inspect._signature_fromstr  # type: ignore[attr-defined]
        monkeypatch.setattr(
            inspect,
            "_signature_fromstr",
            lambda *a, **k: parsed.append("".join(traceback.format_stack()[-8:])) or fromstr(*a, **k),
        )
        async with http_context.open():
            pipeline = build_pipeline(SPEC, cfg, vad_model=proc.userdata["vad"])
            session = build_session(pipeline, vad_model=proc.userdata["vad"], defaults=TurnDefaults())
            session.input.audio = Silence()
            await session.start(VoiceAgent(SPEC))
            try:
                reply = session.generate_reply(user_input="Hello there, what are your hours?")
                await asyncio.wait_for(reply.wait_for_playout(), 20)
                assert fakes.counters().get("gemini", {}).get("requests") == 1  # the reply went through Gemini
            finally:
                await session.aclose()
        assert sorted(set(sys.modules) - before) == []
        assert parsed == [], parsed[0]
        assert all(m.__pydantic_complete__ for m in models)
        assert all(m.__pydantic_complete__ for m in chat)


def test_the_prewarm_starts_livekits_native_runtime_in_the_job_process(tmp_path: Path) -> None:
    """The call's room connect finds LiveKit's native runtime started (its library loaded and initialised: 2-5 ms
    and ~500 page faults of a job start's longest loop iteration otherwise). In a fresh process, as a job
    process is: this test process may have started it already. The child ends as a job process does, with
    `os._exit`: an interpreter finalizing with the runtime started aborts now and then (LiveKit's Rust threads
    calling back into it: 4 of 20 plain exits here), which job processes never do."""
    code = f"""
import os
from types import SimpleNamespace
from core.settings import Settings
from livekit.rtc._ffi_client import FfiClient
from worker import entrypoint

assert FfiClient._instance is None, "started before the prewarm"
proc = SimpleNamespace(userdata={{}})
entrypoint.prewarm(Settings(data_dir={str(tmp_path)!r}, worker_enabled=False), proc)
proc.userdata["store"].close()
assert FfiClient._instance is not None and FfiClient._instance._pid == os.getpid()
print("started", flush=True)
os._exit(0)  # as a job process ends (multiprocessing's child exit)
"""
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=REPO, check=False
    )
    assert out.returncode == 0 and out.stdout.strip().endswith("started"), out.stderr[-2000:]
