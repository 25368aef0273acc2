"""The control API's listening socket under load it did not ask for: idle and slow connections are closed after
VOXARENA_IDLE_TIMEOUT_SECONDS, one client address holds at most VOXARENA_MAX_CONNECTIONS_PER_ADDRESS connections,
the process may open as many files as its hard limit allows, and running out of them anyway is logged once per
interval with a count instead of a traceback per refused accept."""

from __future__ import annotations

import asyncio
import errno
import logging
import resource
from typing import Any

from aiohttp import web
from aiohttp.http_exceptions import LineTooLong
from aiohttp.web_protocol import RequestHandler

from api.accesslog import RedactingAccessLogger
from api.errors import dumps, error_body
from core.settings import Settings

log = logging.getLogger("voxarena")

ACCEPT_LOG_INTERVAL_SECONDS = 10.0
_OUT_OF_FILES = (errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM)


def raise_fd_limit() -> tuple[int, int]:
    """Raise the soft limit on open files to the hard one (each connection, call and job needs some; 1,024 is a
    common soft default); returns (soft, hard) as they are now."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != hard:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
            log.info("open files limit raised from %d to %d", soft, hard)
            soft = hard
        except (ValueError, OSError) as e:
            log.warning("open files limit stays at %d (hard %d): %s", soft, hard, e)
    return soft, hard


class AcceptErrorLog:
    """An event-loop exception handler: accept failures for want of file descriptors are logged at once, then at
    most once per interval with how many there were; every other context goes to the handler it replaces."""

    def __init__(self, loop: asyncio.AbstractEventLoop, *, interval: float = ACCEPT_LOG_INTERVAL_SECONDS) -> None:
        self.loop = loop
        self.interval = interval
        self.previous = loop.get_exception_handler()
        self.suppressed = 0
        self._report: asyncio.TimerHandle | None = None

    def install(self) -> None:
        self.loop.set_exception_handler(self)

    def uninstall(self) -> None:
        if self._report is not None:
            self._report.cancel()
            self._flush()
        self.loop.set_exception_handler(self.previous)

    def __call__(self, loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        exc = context.get("exception")
        if not (
            isinstance(exc, OSError) and exc.errno in _OUT_OF_FILES and "accept" in str(context.get("message", ""))
        ):
            if self.previous is not None:
                self.previous(loop, context)
            else:
                loop.default_exception_handler(context)
            return
        if self._report is None:
            log.error(
                "cannot accept connections: %s (open files limit %d); further failures are counted, one "
                "line per %.0f s",
                exc.strerror,
                resource.getrlimit(resource.RLIMIT_NOFILE)[0],
                self.interval,
            )
            self._report = loop.call_later(self.interval, self._flush)
        else:
            self.suppressed += 1

    def _flush(self) -> None:
        self._report = None
        if self.suppressed:
            log.error(
                "cannot accept connections: %d more failures in the last %.0f s (out of file descriptors)",
                self.suppressed,
                self.interval,
            )
            self.suppressed = 0
            self._report = self.loop.call_later(self.interval, self._flush)


class AddressCap:
    """At most ``limit`` open connections per client address (0: no limit). One over it is answered 429 with the
    one error body and closed before a request is read, so a flood from one address costs one accept each."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.open: dict[str, int] = {}
        self._address_of: dict[Any, str] = {}
        self.refused = 0

    def attach(self, server: web.Server) -> None:
        """Count the connections of the runner's server (aiohttp reports each one's start and end to it)."""
        made, lost = server.connection_made, server.connection_lost

        def connection_made(handler: Any, transport: asyncio.Transport) -> None:
            made(handler, transport)
            peer = transport.get_extra_info("peername")
            address = peer[0] if isinstance(peer, tuple) else str(peer)
            if self.limit and self.open.get(address, 0) >= self.limit:
                self.refused += 1
                body = dumps(
                    error_body(
                        429,
                        "connection_limit",
                        f"this address already holds {self.limit} connections; close some first",
                    )
                )
                transport.write(
                    (
                        "HTTP/1.1 429 Too Many Requests\r\nContent-Type: application/json\r\n"
                        f"Content-Length: {len(body.encode())}\r\nConnection: close\r\n\r\n{body}"
                    ).encode()
                )
                transport.close()
                return
            self.open[address] = self.open.get(address, 0) + 1
            self._address_of[handler] = address

        def connection_lost(handler: Any, exc: BaseException | None = None) -> None:
            address = self._address_of.pop(handler, None)
            if address is not None:
                left = self.open[address] - 1
                if left:
                    self.open[address] = left
                else:
                    del self.open[address]
            lost(handler, exc)

        # aiohttp's Server has no hook for this; its two methods are the documented points every connection passes
        server.connection_made = connection_made  # type: ignore[method-assign]
        server.connection_lost = connection_lost  # type: ignore[method-assign]


_PROTOCOL_ERRORS = {
    400: ("bad_request", "malformed HTTP request"),
    413: ("payload_too_large", "request too large"),
    431: ("bad_request", "request headers too large"),
}


class _JsonErrorHandler(RequestHandler):
    """aiohttp's connection handler, answering what its parser refuses (a request line or header over 8 KB, a NUL
    in a header, a bad method) with the one error body instead of text/plain with the parser's text."""

    __slots__ = ()

    def handle_error(
        self, request: Any, status: int = 500, exc: BaseException | None = None, message: str | None = None
    ) -> web.StreamResponse:
        if request.writer.output_size > 0:  # part of a response went out already: aiohttp's own handling closes it
            return super().handle_error(request, status, exc, message)
        return _json_protocol_error(self, request, status, exc, message)


def _json_protocol_error(
    handler: RequestHandler, request: Any, status: int, exc: BaseException | None, message: str | None
) -> web.StreamResponse:
    if status >= 500:
        handler.log_exception("Error handling request from %s", request.remote, exc_info=exc)
        type_, detail = "internal_error", "internal server error"
    else:
        type_, what = _PROTOCOL_ERRORS.get(status, ("bad_request", "malformed HTTP request"))
        # one line and no echo of what was sent: the parser's text quotes up to the whole oversized line
        reason = (getattr(exc, "message", None) or message or "").strip().splitlines()
        if isinstance(exc, LineTooLong):
            detail = f"{what}: the request line or a header is longer than {exc.args[1]} bytes"
        else:
            detail = f"{what}: {reason[0][:120]}" if reason else what
        log.info("refused a malformed request from %s: %s", request.remote, detail)
    body = error_body(status, type_, detail)
    body["error"], body["details"] = detail, detail  # 004's keys, as on its routes' errors
    resp = web.Response(status=status, text=dumps(body), content_type="application/json")
    resp.force_close()
    return resp


def json_protocol_errors(server: web.Server) -> None:
    """Every connection of ``server`` answers requests aiohttp cannot parse with the API's one error body."""
    made = server.connection_made

    def connection_made(handler: Any, transport: asyncio.Transport) -> None:
        # RequestHandler has __slots__ and web.Server builds it by name: the class is swapped, its layout is the same
        handler.__class__ = _JsonErrorHandler
        made(handler, transport)

    server.connection_made = connection_made  # type: ignore[method-assign]


def make_runner(app: web.Application, settings: Settings) -> web.AppRunner:
    # aiohttp's keep-alive timer also runs from the moment a connection opens and while a request's headers are
    # incomplete: one timeout closes connections that never send a request, send it too slowly, or sit idle.
    return web.AppRunner(
        app, access_log=None, access_log_class=RedactingAccessLogger, keepalive_timeout=settings.idle_timeout_seconds
    )


async def start_site(runner: web.AppRunner, settings: Settings) -> tuple[web.TCPSite, AddressCap]:
    """Start listening (after ``runner.setup()``) with the per-address cap in place."""
    assert runner.server is not None, "runner.setup() first"
    cap = AddressCap(settings.max_connections_per_address)
    cap.attach(runner.server)
    json_protocol_errors(runner.server)
    site = web.TCPSite(runner, settings.host, settings.port)
    await site.start()
    return site, cap
