"""STT audio metered on the wire: what the provider's socket accepted, not what was handed to the plugin.

Each STT plugin gets its own ``MeteredSession`` as ``http_session=``. It passes everything through to the real
``aiohttp.ClientSession`` and wraps the websockets it opens, counting audio bytes only once a send returned without
raising: a provider that never connected, or whose socket died, is not billed for audio it never received.
Deepgram and AssemblyAI stream binary PCM; ElevenLabs realtime streams JSON with base64 audio.
"""

from __future__ import annotations

import binascii
import json
from typing import Any, Callable

import aiohttp

AudioCounter = Callable[[int], None]  # bytes of 16-bit PCM the provider accepted


def base64_audio_bytes(text: str) -> int:
    """Decoded size of the `audio_base_64` field of an ElevenLabs input_audio_chunk message (0 for other text)."""
    if "audio_base_64" not in text:
        return 0
    try:
        payload = json.loads(text).get("audio_base_64") or ""
        return len(binascii.a2b_base64(payload))
    except (ValueError, AttributeError, binascii.Error):
        return 0


class MeteredWebSocket:
    """A provider websocket whose successful audio sends are counted; everything else is the real socket."""

    def __init__(self, ws: aiohttp.ClientWebSocketResponse, count: AudioCounter) -> None:
        self._ws = ws
        self._count = count

    async def send_bytes(self, data: bytes, *args: Any, **kwargs: Any) -> None:
        await self._ws.send_bytes(data, *args, **kwargs)
        self._count(len(data))

    async def send_str(self, data: str, *args: Any, **kwargs: Any) -> None:
        await self._ws.send_str(data, *args, **kwargs)
        if n := base64_audio_bytes(data):
            self._count(n)

    async def send_json(self, data: Any, *args: Any, **kwargs: Any) -> None:
        await self.send_str(json.dumps(data), *args, **kwargs)

    def __aiter__(self) -> "MeteredWebSocket":
        return self

    async def __anext__(self) -> aiohttp.WSMessage:
        return await self._ws.__anext__()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._ws, name)


class MeteredSession:
    """The ``http_session`` of one STT plugin: the real session, with its websockets metered."""

    def __init__(self, session: aiohttp.ClientSession, count: AudioCounter) -> None:
        self._session = session
        self._count = count
        self.model: str | None = None  # set once the plugin is built: the usage is labelled with it

    async def ws_connect(self, *args: Any, **kwargs: Any) -> MeteredWebSocket:
        return MeteredWebSocket(await self._session.ws_connect(*args, **kwargs), self._count)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._session, name)
