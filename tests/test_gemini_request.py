"""The product's Gemini request path (pipelines/providers/gemini_request.py) sends the conversation google-genai's own
path sends, byte for byte at the Gemini fake, without genai validating the conversation's messages on each request."""

from __future__ import annotations

import asyncio
import base64
import concurrent.futures
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from google import genai
from google.genai import models
from google.genai import types as genai_types
from livekit.agents import llm

from pipelines.config import AgentSpec, ProviderCredentials, ProvidersConfig
from pipelines.providers import gemini_request
from pipelines.providers import google as google_provider
from tests.fakes import FakeProviders

SPEC = AgentSpec(
    id="a", name="a", system_prompt="", stt_provider="deepgram", llm_provider="gemini", tts_provider="elevenlabs"
)
# a 1x1 PNG: an image part carries bytes, which the request must hold as base64
PNG = base64.b64decode(
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg=="
)


@pytest.fixture
async def fakes() -> AsyncIterator[FakeProviders]:
    async with FakeProviders() as running:
        yield running


def conversation() -> llm.ChatContext:
    """Every kind of item a call's conversation holds: instructions, text both ways, a tool call and its result, an
    image, and unicode."""
    ctx = llm.ChatContext.empty()
    ctx.add_message(role="system", content="You are the receptionist of a dental clinic.")
    ctx.add_message(role="user", content="Hello, can I book for Tuesday? Ça marche?")
    ctx.add_message(role="assistant", content="Let me look at Tuesday.")
    ctx.items.append(llm.FunctionCall(call_id="c1", name="find_slots", arguments='{"day": "tuesday", "count": 2}'))
    ctx.items.append(
        llm.FunctionCallOutput(call_id="c1", name="find_slots", output='{"slots": ["9:00", "14:30"]}', is_error=False)
    )
    ctx.add_message(role="assistant", content="Tuesday has 9:00 or 14:30.")
    ctx.add_message(
        role="user",
        content=["Here is my card.", llm.ImageContent(image=f"data:image/png;base64,{base64.b64encode(PNG).decode()}")],
    )
    ctx.add_message(role="user", content="The 14:30, please.")
    return ctx


@llm.function_tool
async def find_slots(day: str, count: int) -> str:
    """The free appointment slots of a day."""
    return "[]"


async def _ask(model: llm.LLM[Any]) -> str:
    text = ""
    async with model.chat(chat_ctx=conversation(), tools=[find_slots]) as stream:
        async for chunk in stream:
            if chunk.delta and chunk.delta.content:
                text += chunk.delta.content
    return text


def _config(fakes: FakeProviders) -> ProvidersConfig:
    return ProvidersConfig(google=ProviderCredentials(fakes.api_key, fakes.gemini_base_url))


async def test_the_request_body_is_the_one_genai_itself_sends(fakes: FakeProviders, monkeypatch) -> None:
    monkeypatch.setenv("GOOGLE_GEMINI_BASE_URL", fakes.gemini_base_url)
    fakes.update_script(llm_replies=["Booked.", "Booked."])
    product = google_provider.llm(SPEC, _config(fakes))
    assert isinstance(product._client.aio.models, gemini_request.ConversationModels)  # type: ignore[attr-defined]
    stock = google_provider.llm(SPEC, _config(fakes))
    # genai's own path: a client without the product's models
    stock._client = genai.Client(  # type: ignore[attr-defined]
        api_key=fakes.api_key, http_options=genai_types.HttpOptions(base_url=fakes.gemini_base_url)
    )
    assert type(stock._client.aio.models) is models.AsyncModels  # type: ignore[attr-defined]

    assert await _ask(product) == "Booked."
    assert await _ask(stock) == "Booked."
    ours, theirs = (entry["request"] for entry in fakes.state.log["gemini"])
    assert ours == theirs
    # the body is the conversation (not genai's stand-in): all of it, the image as base64
    turns, _ = conversation().to_provider_format(format="google")
    assert [c["role"] for c in ours["contents"]] == [t["role"] for t in turns] and len(turns) == 5
    flat = str(ours["contents"])
    assert "find_slots" in flat and "Ça marche" in flat and base64.urlsafe_b64encode(PNG).decode() in flat
    await product.aclose()
    await stock.aclose()


async def test_genai_converts_the_messages_as_dicts_and_validates_one_stand_in(
    fakes: FakeProviders, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GOOGLE_GEMINI_BASE_URL", fakes.gemini_base_url)
    fakes.update_script(llm_replies=["Booked."])
    converted: list[Any] = []
    original = models._Content_to_mldev

    def spy(from_object: Any, *args: Any, **kwargs: Any) -> Any:
        converted.append(from_object)
        return original(from_object, *args, **kwargs)

    monkeypatch.setattr(models, "_Content_to_mldev", spy)
    product = google_provider.llm(SPEC, _config(fakes))
    assert await _ask(product) == "Booked."
    sent = fakes.state.log["gemini"][-1]["request"]["contents"]
    # each message of the conversation once, as a dict; as models only genai's one-message stand-in and the
    # instructions (genai converts those as the request's config)
    assert len([c for c in converted if isinstance(c, dict)]) == len(sent) == 5
    assert [c for c in converted if not isinstance(c, dict)] == [
        genai_types.Content(role="user", parts=[genai_types.Part(text=".")]),
        genai_types.UserContent(parts=[genai_types.Part(text="You are the receptionist of a dental clinic.")]),
    ]
    await product.aclose()


async def test_concurrent_requests_on_one_client_keep_their_own_conversations(
    fakes: FakeProviders, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GOOGLE_GEMINI_BASE_URL", fakes.gemini_base_url)
    fakes.update_script(llm_echo=True, llm_first_token_delay_ms=100)
    product = google_provider.llm(SPEC, _config(fakes))

    async def say(words: str) -> str:
        ctx = llm.ChatContext.empty()
        ctx.add_message(role="user", content=words)
        text = ""
        async with product.chat(chat_ctx=ctx) as stream:
            async for chunk in stream:
                if chunk.delta and chunk.delta.content:
                    text += chunk.delta.content
        return text

    phrases = [f"number {n}" for n in range(8)]
    assert await asyncio.gather(*(say(p) for p in phrases)) == [f"You said: {p}" for p in phrases]
    await product.aclose()


class _CountingExecutor(concurrent.futures.ThreadPoolExecutor):
    def __init__(self) -> None:
        super().__init__(max_workers=2)
        self.calls: list[str] = []

    def submit(self, fn: Any, /, *args: Any, **kwargs: Any) -> concurrent.futures.Future[Any]:
        self.calls.append(getattr(fn, "__qualname__", repr(fn)))
        return super().submit(fn, *args, **kwargs)


async def test_after_its_first_request_a_client_sends_without_a_hop_to_a_thread(
    fakes: FakeProviders, monkeypatch: pytest.MonkeyPatch
) -> None:
    """genai's session trusts the environment, and aiohttp then asked it (a proxy, ~/.netrc) in the loop's default
    executor on every request: two thread hops before each request left, on a job's loop that is carrying audio."""
    monkeypatch.setenv("GOOGLE_GEMINI_BASE_URL", fakes.gemini_base_url)
    fakes.update_script(llm_replies=["Booked."] * 4)
    executor = _CountingExecutor()
    asyncio.get_running_loop().set_default_executor(executor)
    product = google_provider.llm(SPEC, _config(fakes))
    assert await _ask(product) == "Booked."
    first = list(executor.calls)
    assert 1 <= len(first) <= 3, first  # the environment, asked once
    for _ in range(3):
        assert await _ask(product) == "Booked."
    assert executor.calls == first, executor.calls[len(first) :]
    await product.aclose()


async def test_a_proxy_from_the_environment_still_carries_every_request(
    fakes: FakeProviders, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Asked once, the environment's proxy is the session's default: the first request and the ones after it all go
    through it, as they did when aiohttp asked on each."""
    seen: list[str] = []

    async def proxy(request: web.Request) -> web.Response:  # a forwarding HTTP proxy (absolute-form requests)
        seen.append(str(request.url))
        skip = {"host", "content-length", "transfer-encoding", "proxy-connection"}
        async with (
            aiohttp.ClientSession() as upstream_session,
            upstream_session.request(
                request.method,
                request.url,
                headers={k: v for k, v in request.headers.items() if k.lower() not in skip},
                data=await request.read(),
            ) as upstream,
        ):
            return web.Response(body=await upstream.read(), status=upstream.status, content_type=upstream.content_type)

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", proxy)
    async with TestServer(app, host="127.0.0.1") as server:
        for name in ("no_proxy", "NO_PROXY"):
            monkeypatch.delenv(name, raising=False)
        monkeypatch.setenv("HTTP_PROXY", f"http://127.0.0.1:{server.port}")
        monkeypatch.setenv("GOOGLE_GEMINI_BASE_URL", fakes.gemini_base_url)
        fakes.update_script(llm_replies=["Booked."] * 3)
        product = google_provider.llm(SPEC, _config(fakes))
        for _ in range(3):
            assert await _ask(product) == "Booked."
        streamed = [url for url in seen if "streamGenerateContent" in url]
        assert len(streamed) == 3 and all(url.startswith(fakes.gemini_base_url.rstrip("/")) for url in streamed), seen
        await product.aclose()
