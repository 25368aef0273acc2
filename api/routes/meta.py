"""Unauthenticated routes: /health, /healthz, /openapi.json and the embedded issuer's JWKS."""

from __future__ import annotations

import time

from aiohttp import web

from core.store.migrations import schema_version
from core.store.sessions import count_active
from core.store.timefmt import now_iso

from ..errors import Unavailable
from ..keys import ISSUER, LIVEKIT_HEALTH, LOOP, NODE, STARTED, STORE
from ..routing import RequestContext, Route
from ..schemas.health import Health, Healthz
from ..version import VERSION

OPENAPI = web.AppKey("openapi", dict)


async def health(ctx: RequestContext) -> dict:
    app = ctx.request.app
    try:
        version = await app[STORE].read(schema_version)
        database = {"status": "ok", "detail": f"schema version {version}"}
    except Exception as e:  # health must answer even when the database does not
        database = {"status": "error", "detail": str(e)}
    failure = app[STORE].failure
    if failure is not None and database["status"] == "ok":  # readable, but the last writes failed
        database = {"status": "degraded", "detail": failure}
    livekit = await app[LIVEKIT_HEALTH]()
    healthy = database["status"] == "ok" and livekit["status"] in {"ok", "disabled", "not_configured"}
    return {
        "status": "healthy" if healthy else "degraded",
        "version": VERSION,
        "uptime": round(time.monotonic() - app[STARTED], 3),
        "timestamp": now_iso(),
        "database": database,
        "livekit": livekit,
        "event_loop": app[LOOP].snapshot(),
        "node": (
            {"id": app[NODE].id, "draining": app[NODE].draining, "backend": app[STORE].backend} if NODE in app else None
        ),
    }


async def healthz(ctx: RequestContext) -> dict:
    app = ctx.request.app
    try:
        active = await app[STORE].read(count_active)
    except Exception as e:  # the database is down: not ok, and said so in the one error body
        raise Unavailable(f"database: {e}") from None
    return {"status": "ok", "uptime": int(time.monotonic() - app[STARTED]), "activeCalls": active}


async def openapi(ctx: RequestContext) -> web.Response:
    return web.json_response(ctx.request.app[OPENAPI])


async def jwks(ctx: RequestContext) -> web.Response:
    issuer = ctx.request.app.get(ISSUER)
    if issuer is None:
        raise web.HTTPNotFound()
    return web.json_response(issuer.jwks())


ROUTES = [
    Route("GET", "/health", health, "Liveness and dependencies", "meta", response=Health, public=True),
    Route(
        "GET",
        "/healthz",
        healthz,
        "Liveness and calls in progress (the Phony shape)",
        "meta",
        response=Healthz,
        public=True,
        errors=(503,),
    ),
    Route("GET", "/openapi.json", openapi, "This document", "meta", public=True, raw=True),
    Route(
        "GET", "/.well-known/jwks.json", jwks, "Public keys of the embedded token issuer", "meta", public=True, raw=True
    ),
]
