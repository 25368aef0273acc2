"""Usage metered on the wire: what the provider accepted, not what was handed to the plugin.

Each STT plugin, and each TTS plugin that speaks HTTP, gets its own ``MeteredSession`` as ``http_session=``. It
passes everything through to the real ``aiohttp.ClientSession`` and wraps the websockets it opens, counting only once
a send returned without raising (and an HTTP request only once the provider answered it with a success): a provider
that never connected, or whose socket died, is not billed for what it never received.

What is counted depends on the provider (``Units``): Deepgram and AssemblyAI stream binary PCM and ElevenLabs
realtime JSON with base64 audio (bytes of audio); a TTS is billed the characters of the text fields it was sent,
which its plugin re-tokenised (sentences, words, a context-opening space) and is not the reply text.
"""

from __future__ import annotations

import binascii
import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import aiohttp

Counter = Callable[[int], None]  # units the provider accepted: bytes of 16-bit PCM (STT), characters (TTS)


def _none(_: Any) -> int:
    return 0


def base64_audio_bytes(text: str) -> int:
    """Decoded size of the `audio_base_64` field of an ElevenLabs input_audio_chunk message (0 for other text)."""
    if "audio_base_64" not in text:
        return 0
    try:
        payload = json.loads(text).get("audio_base_64") or ""
        return len(binascii.a2b_base64(payload))
    except (ValueError, AttributeError, binascii.Error):
        return 0


@dataclass(frozen=True)
class Units:
    """How many billed units one thing a plugin sends carries."""

    binary: Callable[[bytes], int] = _none  # a binary websocket message
    text: Callable[[str], int] = _none  # a text websocket message
    request: Callable[[Any], int] = _none  # the JSON body of an HTTP request


STT_AUDIO = Units(binary=len, text=base64_audio_bytes)


def json_text_units(characters: Callable[[Any], int]) -> Callable[[str], int]:
    """A text-message measure from a measure of the decoded JSON message (0 for anything that is not JSON)."""

    def units(text: str) -> int:
        try:
            return characters(json.loads(text))
        except ValueError:
            return 0

    return units


class MeteredWebSocket:
    """A provider websocket whose successful sends are counted; everything else is the real socket."""

    def __init__(self, ws: aiohttp.ClientWebSocketResponse, count: Counter, units: Units = STT_AUDIO) -> None:
        self._ws = ws
        self._count = count
        self._units = units

    async def send_bytes(self, data: bytes, *args: Any, **kwargs: Any) -> None:
        await self._ws.send_bytes(data, *args, **kwargs)
        if n := self._units.binary(data):
            self._count(n)

    async def send_str(self, data: str, *args: Any, **kwargs: Any) -> None:
        await self._ws.send_str(data, *args, **kwargs)
        if n := self._units.text(data):
            self._count(n)

    async def send_json(self, data: Any, *args: Any, **kwargs: Any) -> None:
        await self.send_str(json.dumps(data), *args, **kwargs)

    def __aiter__(self) -> MeteredWebSocket:
        return self

    async def __anext__(self) -> aiohttp.WSMessage:
        return await self._ws.__anext__()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._ws, name)


class _MeteredRequest:
    """``async with session.post(..., json=body) as resp``: the body's units count once the provider said 2xx."""

    def __init__(self, request: Any, units: int, count: Counter) -> None:
        self._request = request
        self._units = units
        self._count = count

    async def __aenter__(self) -> aiohttp.ClientResponse:
        resp: aiohttp.ClientResponse = await self._request.__aenter__()
        if self._units and resp.ok:
            self._count(self._units)
        return resp

    async def __aexit__(self, *exc: Any) -> None:
        await self._request.__aexit__(*exc)


class MeteredSession:
    """The ``http_session`` of one plugin: the real session, with its websockets and request bodies metered."""

    def __init__(self, session: aiohttp.ClientSession, count: Counter, units: Units = STT_AUDIO) -> None:
        self._session = session
        self._count = count
        self._units = units
        self.model: str | None = None  # set once the plugin is built: the usage is labelled with it

    async def ws_connect(self, *args: Any, **kwargs: Any) -> MeteredWebSocket:
        return MeteredWebSocket(await self._session.ws_connect(*args, **kwargs), self._count, self._units)

    def post(self, *args: Any, json: Any = None, **kwargs: Any) -> _MeteredRequest:
        return _MeteredRequest(
            self._session.post(*args, json=json, **kwargs),
            self._units.request(json) if json is not None else 0,
            self._count,
        )

    def __getattr__(self, name: str) -> Any:
        return getattr(self._session, name)


class TextWire:
    """The characters one TTS provider was sent, reported to the meter labelled with the plugin's model. Plugins on
    HTTP take ``http_session(units)``; the others (gRPC) call ``count`` once a message went out."""

    def __init__(self, session: aiohttp.ClientSession, add: Callable[[str | None, int], None]) -> None:
        self._session = session
        self._add = add
        self.model: str | None = None  # set once the plugin is built

    def count(self, characters: int) -> None:
        self._add(self.model, characters)

    def http_session(self, units: Units) -> MeteredSession:
        return MeteredSession(self._session, self.count, units)
