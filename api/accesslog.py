"""An access log that never writes a credential: `/events/ws?token=...` carries one in its URL (browsers cannot set
headers on a websocket), and aiohttp's access log writes the URL with its query."""

from __future__ import annotations

from aiohttp.abc import BaseRequest, StreamResponse
from aiohttp.web_log import AccessLogger

REDACTED = "***"
SECRET_PARAMS = ("token",)


class RedactingAccessLogger(AccessLogger):
    def log(self, request: BaseRequest, response: StreamResponse, time: float) -> None:
        if any(p in request.query for p in SECRET_PARAMS):
            query = [(k, REDACTED if k in SECRET_PARAMS else v) for k, v in request.query.items()]
            request = request.clone(rel_url=request.rel_url.with_query(query))
        super().log(request, response, time)
