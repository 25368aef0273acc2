"""The conversation of a Gemini request, converted to JSON without google-genai's per-request validation of it.

Every turn an agent sends the whole conversation. google-genai 3.6 validates it into `_GenerateContentParameters` on
each request, and then converts it back to JSON by reading the pydantic models' attributes. For the `Content`
instances LiveKit's google plugin passes, that is ~0.3 ms per message, on the job's event loop before the request
leaves: each instance is tried against every member of the contents union with `from_attributes`, and genai's
`_check_field_type_mismatches` reads every field of each candidate model, each miss an `AttributeError` raised by
pydantic's `__getattr__`. At 40 earlier turns that was ~27 ms of the first token (bench/README.md, section 1c).

Here the conversation still goes through genai's own converter (`_Content_to_mldev`), but as plain dicts
(`model_dump`), which gives the same JSON (tests/test_gemini_request.py compares the two bodies at the fake) at
~0.02 ms per message, and genai stands in a one-message conversation for the one it validates. Everything else
stays genai's: the model's URL, the config, the HTTP options, the streaming and the response parsing. The request's
conversation is handed to the transport through a context variable, so concurrent requests on one client stay
apart.

What would remove this: genai returning at once from `_check_field_type_mismatches` for an instance of the class
being validated (or not re-validating its own instances), and converting dicts rather than models.

genai's aiohttp session is also made `trust_env=True`, with which aiohttp asks the environment for a proxy and
~/.netrc for credentials on every request, each in a thread of the loop's default executor: two hops to a thread
and back before each request leaves, 7.6 ms p50 (15 at p90) of a call's LLM hop on a job's loop busy with audio
(bench/README.md, section 1). The first streamed request of a session asks both once and gives the session what they
said as its defaults (`_resolve_environment_once`). Upstream, aiohttp caching the environment's proxies (or genai
taking a session with a proxy rather than `trust_env`) would remove this.
"""

from __future__ import annotations

import asyncio
from contextvars import ContextVar
from typing import Any, cast

import aiohttp
from aiohttp.helpers import get_env_proxy_for_url
from google import genai
from google.genai import _common, models
from google.genai import types as genai_types
from yarl import URL

# The request's conversation, converted, for the transport to put in the body genai built around the stand-in.
_conversation: ContextVar[list[Any] | None] = ContextVar("gemini_conversation", default=None)
# What genai validates in its place: one message as a dict (a dict is validated in ~0.04 ms, an instance in ~0.3).
_STAND_IN: list[Any] = [{"role": "user", "parts": [{"text": "."}]}]


def to_request_contents(contents: list[genai_types.Content]) -> list[Any]:
    """The conversation as the Gemini API's JSON: genai's converter on each message as a dict, then genai's own
    encoding of what JSON cannot hold (bytes as base64)."""
    converted = [models._Content_to_mldev(content.model_dump(exclude_none=True)) for content in contents]
    return cast(
        list[Any], _common.encode_unserializable_types({"contents": _common.convert_to_dict(converted)})["contents"]
    )


class _Transport:
    """genai's API client, except that a streamed request made while a conversation is set carries it."""

    def __init__(self, api_client: Any) -> None:
        self._api_client = api_client

    def __getattr__(self, name: str) -> Any:
        return getattr(self._api_client, name)

    async def async_request_streamed(
        self, http_method: str, path: str, request_dict: dict[str, object], http_options: Any = None
    ) -> Any:
        client = self._api_client
        if client._use_aiohttp() and not client._http_options.aiohttp_client:
            session = await client._get_aiohttp_session()
            if isinstance(session, aiohttp.ClientSession) and session.trust_env:
                await _resolve_environment_once(session, str(client._http_options.base_url or ""))
        conversation = _conversation.get()
        if conversation is not None:
            request_dict = {**request_dict, "contents": conversation}
        return await client.async_request_streamed(http_method, path, request_dict, http_options)


async def _resolve_environment_once(session: aiohttp.ClientSession, base_url: str) -> None:
    """What `trust_env` makes aiohttp ask on every request (the environment's proxy for the API's URL, ~/.netrc's
    credentials for its host), asked once in a thread and kept as the session's defaults; the session then stops
    asking. Every request of a genai session goes to the one API host, so the answer holds for all of them."""
    url = URL(base_url)
    host = url.host
    if not host:  # no URL to ask about: aiohttp goes on asking per request
        return

    def ask() -> tuple[URL | None, aiohttp.BasicAuth | None, aiohttp.BasicAuth | None]:
        try:
            proxy, proxy_auth = get_env_proxy_for_url(url)
        except LookupError:
            proxy, proxy_auth = None, None
        return proxy, proxy_auth, session._get_netrc_auth(host)

    proxy, proxy_auth, auth = await asyncio.to_thread(ask)
    if not session.trust_env:  # a concurrent first request already did
        return
    session._default_proxy, session._default_proxy_auth = proxy, proxy_auth
    if auth is not None and session._default_auth is None:
        session._default_auth = auth
    session._trust_env = False


class ConversationModels(models.AsyncModels):
    """genai's async models, with the conversation of a streamed Gemini API request converted as above. A request
    this does not know (Vertex AI, contents other than a list of `Content`) takes genai's own path."""

    def __init__(self, api_client: Any) -> None:
        super().__init__(cast(Any, _Transport(api_client)))
        self._vertexai = bool(api_client.vertexai)

    async def _generate_content_stream(self, *, model: str, contents: Any, config: Any = None) -> Any:
        if (
            self._vertexai
            or not isinstance(contents, list)
            or not contents
            or not all(isinstance(content, genai_types.Content) for content in contents)
        ):
            return await super()._generate_content_stream(model=model, contents=contents, config=config)
        token = _conversation.set(to_request_contents(contents))
        try:
            return await super()._generate_content_stream(model=model, contents=_STAND_IN, config=config)
        finally:
            _conversation.reset(token)


def install(client: genai.Client) -> genai.Client:
    """The client's async models (the ones LiveKit's google plugin streams through) made `ConversationModels`."""
    client.aio._models = ConversationModels(client._api_client)
    return client
