"""One aiohttp application serving every provider fake, plus the `/_fake/*` control API.

Routes (all on 127.0.0.1:<port>):
  Deepgram        WS   /v1/listen
  AssemblyAI      WS   /v3/ws
  ElevenLabs STT  WS   /v1/speech-to-text/realtime
  ElevenLabs TTS  WS   /v1/text-to-speech/{voice}/multi-stream-input
                  POST /v1/text-to-speech/{voice}/stream
  Gemini          GET  /{v1,v1beta}/models, POST /{v1,v1beta}/models/{model}:streamGenerateContent
  Resemble        WS   /resemble/stream, POST /resemble/synthesize
  Google TTS      gRPC google.cloud.texttospeech.v1.TextToSpeech on its own TLS port (google_tts.py)
  Control         GET  /_fake/health, /_fake/counters, /_fake/script, /_fake/urls, /_fake/log
                  POST /_fake/script (partial update), PUT /_fake/script (replace),
                  POST /_fake/reset (zero counters and the request log)
"""

from __future__ import annotations

import asyncio
import json
import logging
import shutil
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from types import TracebackType
from typing import Any

from aiohttp import web

from . import assemblyai, deepgram, elevenlabs_stt, elevenlabs_tts, gemini, openai, resemble
from .common import EXTRA_URLS_KEY, SOCKETS_KEY, STATE_KEY, STOPPING_KEY, json_response, state_of
from .google_tts import GoogleTTSServer
from .state import PROVIDERS, FailureMode, FakeScript, FakeState

logger = logging.getLogger("tests.fakes")

Counters = dict[str, dict[str, int | float]]


def build_app(state: FakeState) -> web.Application:
    app = web.Application(client_max_size=32 * 1024 * 1024)
    app[STATE_KEY] = state
    app[SOCKETS_KEY] = set()
    app[STOPPING_KEY] = asyncio.Event()
    app[EXTRA_URLS_KEY] = {}
    app.on_shutdown.append(_close_everything)
    r = app.router
    r.add_get("/v1/listen", deepgram.handle_listen)
    r.add_get("/v3/ws", assemblyai.handle_ws)
    r.add_get("/v1/speech-to-text/realtime", elevenlabs_stt.handle_realtime)
    r.add_get("/v1/text-to-speech/{voice}/multi-stream-input", elevenlabs_tts.handle_multi_stream)
    r.add_post("/v1/text-to-speech/{voice}/stream", elevenlabs_tts.handle_stream_rest)
    r.add_get("/{version:v1|v1beta}/models", gemini.handle_models)
    r.add_route("*", "/{version:v1|v1beta}/models/{tail}", gemini.handle_model_action)
    r.add_get("/openai/v1/models", openai.handle_models)
    r.add_post("/openai/v1/chat/completions", openai.handle_chat_completions)
    r.add_get("/resemble/stream", resemble.handle_stream)
    r.add_post("/resemble/synthesize", resemble.handle_synthesize)
    r.add_get("/_fake/health", _health)
    r.add_get("/_fake/counters", _get_counters)
    r.add_post("/_fake/reset", _reset)
    r.add_get("/_fake/script", _get_script)
    r.add_post("/_fake/script", _update_script)
    r.add_put("/_fake/script", _replace_script)
    r.add_get("/_fake/log", _get_log)
    r.add_get("/_fake/urls", _get_urls)
    return app


async def _close_everything(app: web.Application) -> None:
    # Release handlers parked in an injected "hang" and close live sockets, so shutdown is
    # immediate instead of waiting for aiohttp's shutdown timeout.
    app[STOPPING_KEY].set()
    sockets: set[web.WebSocketResponse] = app[SOCKETS_KEY]
    for ws in list(sockets):
        await ws.close(code=1001, message=b"fake server shutting down")


async def _health(request: web.Request) -> web.Response:
    return json_response(200, {"ok": True})


async def _get_counters(request: web.Request) -> web.Response:
    return json_response(200, state_of(request).counters())


async def _reset(request: web.Request) -> web.Response:
    state_of(request).reset_counters()
    return json_response(200, {"ok": True})


async def _get_script(request: web.Request) -> web.Response:
    return json_response(200, state_of(request).script.to_dict())


async def _update_script(request: web.Request) -> web.Response:
    state = state_of(request)
    try:
        state.script.update(await request.json())
    except (ValueError, TypeError, KeyError) as e:
        return json_response(400, {"error": str(e)})
    return json_response(200, state.script.to_dict())


async def _replace_script(request: web.Request) -> web.Response:
    state = state_of(request)
    try:
        state.script = FakeScript.from_dict(await request.json())
    except (ValueError, TypeError, KeyError) as e:
        return json_response(400, {"error": str(e)})
    return json_response(200, state.script.to_dict())


async def _get_urls(request: web.Request) -> web.Response:
    return json_response(200, {**urls_for(request.url.port or 0), **request.app[EXTRA_URLS_KEY]})


async def _get_log(request: web.Request) -> web.Response:
    state = state_of(request)
    provider = request.query.get("provider")
    if provider is not None and provider not in PROVIDERS:
        return json_response(400, {"error": f"unknown provider {provider!r}"})
    names = [provider] if provider else list(PROVIDERS)
    return json_response(200, {name: list(state.log[name]) for name in names})


class FakeProviders:
    """Start all provider fakes on 127.0.0.1 (port 0 = pick a free one).

    async with FakeProviders(script={"stt_transcripts": ["hi"]}) as fakes:
        deepgram.STT(base_url=fakes.deepgram_url, api_key=fakes.api_key)
    """

    def __init__(
        self,
        script: FakeScript | dict[str, Any] | None = None,
        *,
        api_key: str = "fake-key",
        host: str = "127.0.0.1",
        port: int = 0,
    ) -> None:
        if host not in ("127.0.0.1", "localhost"):
            raise ValueError("fakes only listen on loopback")
        if isinstance(script, dict):
            script = FakeScript.from_dict(script)
        self.state = FakeState(script, api_key=api_key)
        self._host = host
        self._requested_port = port
        self._runner: web.AppRunner | None = None
        self._google_tts: GoogleTTSServer | None = None
        self._files: Path | None = None
        self.port = 0

    @property
    def api_key(self) -> str:
        return self.state.api_key

    # --- lifecycle -------------------------------------------------------------------------
    async def start(self) -> FakeProviders:
        app = build_app(self.state)
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=2.0)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self._host, self._requested_port)
        await site.start()
        self.port = int(self._runner.addresses[0][1])
        await self._start_google_tts()
        app[EXTRA_URLS_KEY].update(self._google_urls())
        return self

    async def _start_google_tts(self) -> None:
        # Key generation is CPU work: off the loop that serves the other fakes.
        server = self._google_tts = await asyncio.to_thread(GoogleTTSServer, self.state)
        await server.start()
        # A token exchange, if a client ever tried one, would reach this server (and fail), never Google's.
        account = await asyncio.to_thread(server.issue, token_uri=f"{self.base_url}/google/oauth2/token")
        self._files = Path(tempfile.mkdtemp(prefix="voxarena-fakes-"))
        (self._files / "google-tts-ca.pem").write_bytes(server.tls_cert)
        (self._files / "google-service-account.json").write_text(json.dumps(account, indent=2))

    async def stop(self) -> None:
        if self._google_tts is not None:
            await self._google_tts.stop()
            self._google_tts = None
        if self._files is not None:
            shutil.rmtree(self._files, ignore_errors=True)
            self._files = None
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> FakeProviders:
        return await self.start()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()

    # --- URLs to hand to the real plugins ----------------------------------------------------
    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def deepgram_url(self) -> str:
        """deepgram.STT(base_url=...)"""
        return f"{self.base_url}/v1/listen"

    @property
    def assemblyai_url(self) -> str:
        """assemblyai.STT(base_url=...)"""
        return f"ws://127.0.0.1:{self.port}"

    @property
    def elevenlabs_base_url(self) -> str:
        """elevenlabs.STT(base_url=...) and elevenlabs.TTS(base_url=...)"""
        return f"{self.base_url}/v1"

    @property
    def gemini_base_url(self) -> str:
        """Env GOOGLE_GEMINI_BASE_URL (or types.HttpOptions(base_url=...))."""
        return self.base_url

    @property
    def openai_base_url(self) -> str:
        """openai.LLM(base_url=...)"""
        return f"{self.base_url}/openai/v1"

    @property
    def resemble_base_url(self) -> str:
        """Prefix of the REST URL, for config that appends "/synthesize" itself."""
        return f"{self.base_url}/resemble"

    @property
    def resemble_ws_url(self) -> str:
        """livekit.plugins.resemble.tts.RESEMBLE_WEBSOCKET_URL"""
        return f"ws://127.0.0.1:{self.port}/resemble/stream"

    @property
    def resemble_rest_url(self) -> str:
        """livekit.plugins.resemble.tts.RESEMBLE_REST_API_URL"""
        return f"{self.base_url}/resemble/synthesize"

    @property
    def google_tts_endpoint(self) -> str:
        """host:port for the Cloud TTS client (ClientOptions(api_endpoint=...), VOXARENA_GOOGLE_TTS_ENDPOINT)."""
        assert self._google_tts is not None, "start() first"
        return f"127.0.0.1:{self._google_tts.port}"

    @property
    def google_tts_ca_file(self) -> str:
        """The fake's TLS root: env GRPC_DEFAULT_SSL_ROOTS_FILE_PATH, before the first gRPC channel."""
        assert self._files is not None, "start() first"
        return str(self._files / "google-tts-ca.pem")

    @property
    def google_credentials_file(self) -> str:
        """A service-account JSON the fake issued (a fresh RSA key): credentials_file=... or
        VOXARENA_GOOGLE_CREDENTIALS_FILE."""
        assert self._files is not None, "start() first"
        return str(self._files / "google-service-account.json")

    def _google_urls(self) -> dict[str, str]:
        return {
            "google_tts_endpoint": self.google_tts_endpoint,
            "google_tts_ca_file": self.google_tts_ca_file,
            "google_credentials_file": self.google_credentials_file,
        }

    def urls(self) -> dict[str, str]:
        return {**urls_for(self.port), **self._google_urls()}

    # --- scripting, failures, counters ---------------------------------------------------------
    @property
    def script(self) -> FakeScript:
        return self.state.script

    def update_script(self, **fields: Any) -> None:
        self.state.script.update(fields)

    def fail(self, provider: str, mode: FailureMode, *, times: int | None = None) -> None:
        """Make `provider` fail (reject = HTTP 500, drop = die mid-session, hang = stall)."""
        failures = dict(self.state.script.failures)
        failures[provider] = {"mode": mode, "times": times}
        self.state.script.update({"failures": failures})

    def heal(self, provider: str | None = None) -> None:
        failures = {} if provider is None else {k: v for k, v in self.script.failures.items() if k != provider}
        self.state.script.update({"failures": failures})

    def counters(self) -> Counters:
        return self.state.counters()

    def reset_counters(self) -> None:
        self.state.reset_counters()

    async def wait_for(self, predicate: Callable[[Counters], bool], timeout: float = 5.0) -> Counters:
        """Poll the counters until `predicate` holds (e.g. a socket was closed)."""
        deadline = time.monotonic() + timeout
        while True:
            snapshot = self.counters()
            if predicate(snapshot):
                return snapshot
            if time.monotonic() > deadline:
                raise TimeoutError(f"counters never matched: {snapshot}")
            await asyncio.sleep(0.02)


def urls_for(port: int) -> dict[str, str]:
    """Every URL/env value a client needs, for a fake on `port` (in or out of process)."""
    base = f"http://127.0.0.1:{port}"
    return {
        "base_url": base,
        "deepgram_url": f"{base}/v1/listen",
        "assemblyai_url": f"ws://127.0.0.1:{port}",
        "elevenlabs_base_url": f"{base}/v1",
        "gemini_base_url": base,
        "openai_base_url": f"{base}/openai/v1",
        "resemble_base_url": f"{base}/resemble",
        "resemble_ws_url": f"ws://127.0.0.1:{port}/resemble/stream",
        "resemble_rest_url": f"{base}/resemble/synthesize",
        "counters_url": f"{base}/_fake/counters",
        "script_url": f"{base}/_fake/script",
    }
