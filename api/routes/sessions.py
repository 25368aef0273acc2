"""/api/sessions and /api/dashboard/metrics."""

from __future__ import annotations

from pathlib import Path

from aiohttp import web

from core.recordings import CONTENT_TYPE, ByteRange, RangeNotSatisfiable, StorageUnavailable
from core.store import agent_webhooks as webhooks_repo
from core.store import sessions as repo
from core.store import usage as usage_repo
from core.store.errors import NotFoundError
from core.store.timefmt import today_utc

from ..errors import Unavailable
from ..keys import RECORDINGS, STORE, TRANSCRIPTS
from ..routing import RequestContext, Route
from ..schemas.common import Deleted
from ..schemas.sessions import (
    CallAnalysis,
    DashboardMetrics,
    Session,
    SessionList,
    SessionQuery,
    TranscriptItem,
    WebhookAttempt,
    dashboard_wire,
    date_bounds,
    session_wire,
    webhook_attempt_wire,
)
from ..services import transcripts


async def list_sessions(ctx: RequestContext) -> dict:
    q: SessionQuery = ctx.query
    start, end = date_bounds(q)
    listed = await ctx.request.app[STORE].read(
        lambda db: transcripts.list_sessions(
            ctx.request.app[TRANSCRIPTS],
            db,
            ctx.tenant_id,
            page=q.page,
            limit=q.limit,
            start=start,
            end_exclusive=end,
            direction=q.direction,
            channel=q.channel,
        )
    )
    return {"sessions": [session_wire(r) for r in listed["sessions"]], "total": listed["total"]}


async def get_session(ctx: RequestContext) -> dict:
    cache, sid = ctx.request.app[TRANSCRIPTS], ctx.params["id"]
    return session_wire(
        await ctx.request.app[STORE].read(lambda db: transcripts.get_session(cache, db, ctx.tenant_id, sid))
    )


async def get_session_transcripts(ctx: RequestContext) -> list:
    return await ctx.request.app[STORE].read(repo.transcript, ctx.tenant_id, ctx.params["id"])


async def get_session_analysis(ctx: RequestContext) -> dict | None:
    return await ctx.request.app[STORE].read(repo.get_analysis, ctx.tenant_id, ctx.params["id"])


async def get_session_webhooks(ctx: RequestContext) -> list:
    rows = await ctx.request.app[STORE].read(webhooks_repo.attempts, ctx.tenant_id, ctx.params["id"])
    return [webhook_attempt_wire(r) for r in rows]


async def get_recording(ctx: RequestContext) -> web.StreamResponse:
    """The call's recording as audio/ogg; a Range request gets its bytes (206, Content-Range), as a player asks.
    From the data dir, aiohttp's file response answers the Range; from object storage the one range is passed
    through to the store and its bytes streamed on as they come."""
    row = await ctx.request.app[STORE].read(repo.recording, ctx.tenant_id, ctx.params["id"])
    if row["recording_error"]:
        raise NotFoundError(f"the recording of session {row['id']} was not kept: {row['recording_error']}")
    headers = {"Content-Type": CONTENT_TYPE, "Cache-Control": "private, no-store"}
    try:
        found = await ctx.request.app[RECORDINGS].open(
            row["recording_key"], byte_range=ByteRange.parse(ctx.request.headers.get("Range"))
        )
    except RangeNotSatisfiable as e:
        raise web.HTTPRequestRangeNotSatisfiable(
            headers={"Content-Range": f"bytes */{e.size}"} if e.size is not None else None
        ) from e
    except StorageUnavailable as e:
        raise Unavailable(str(e), retry_after=5) from e
    if found is None:
        raise NotFoundError(f"the recording of session {row['id']} is gone")
    if isinstance(found, Path):
        # aiohttp's file response answers Range (206 with Content-Range, 416 past the end) and streams from the file
        return web.FileResponse(found, headers=headers)
    try:
        headers |= {"Accept-Ranges": "bytes", "Content-Length": str(found.size)}
        if found.content_range:
            headers["Content-Range"] = found.content_range
        resp = web.StreamResponse(status=206 if found.content_range else 200, headers=headers)
        await resp.prepare(ctx.request)
        async for chunk in found.chunks:
            await resp.write(chunk)
        await resp.write_eof()
        return resp
    finally:
        await found.close()


async def delete_recording(ctx: RequestContext) -> dict:
    """The file first, then the session's recording fields: a failure in between leaves a session that still
    names its recording, never a file nobody can reach."""
    store = ctx.request.app[STORE]
    row = await store.read(repo.recording, ctx.tenant_id, ctx.params["id"])
    try:
        await ctx.request.app[RECORDINGS].delete(row["recording_key"])
    except StorageUnavailable as e:
        raise Unavailable(str(e), retry_after=5) from e
    await store.write(repo.clear_recording, row["id"])
    return {"success": True, "message": "recording deleted"}


async def dashboard_metrics(ctx: RequestContext) -> dict:
    today = today_utc()

    def read(db) -> dict:
        metrics = dashboard_wire(repo.dashboard(db, ctx.tenant_id))
        metrics["costToday"] = usage_repo.usd(usage_repo.costs_since(db, ctx.tenant_id, today.isoformat()))
        metrics["costThisMonth"] = usage_repo.usd(
            usage_repo.costs_since(db, ctx.tenant_id, today.replace(day=1).isoformat())
        )
        metrics["totalCost"] = usage_repo.usd(usage_repo.costs_since(db, ctx.tenant_id, "0000-00-00"))
        return metrics

    return await ctx.request.app[STORE].read(read)


ROUTES = [
    Route(
        "GET",
        "/api/sessions",
        list_sessions,
        "List your call sessions",
        "sessions",
        response=SessionList,
        query=SessionQuery,
    ),
    Route(
        "GET",
        "/api/sessions/{id}",
        get_session,
        "Get a session with its transcript",
        "sessions",
        response=Session,
        owns="session",
        owned_param="id",
    ),
    Route(
        "GET",
        "/api/sessions/{id}/transcripts",
        get_session_transcripts,
        "The transcript items of a session",
        "sessions",
        response=TranscriptItem,
        many=True,
        owns="session",
        owned_param="id",
    ),
    Route(
        "GET",
        "/api/sessions/{id}/analysis",
        get_session_analysis,
        "Post-call analysis (null until it exists)",
        "sessions",
        response=CallAnalysis,
        nullable=True,
        owns="session",
        owned_param="id",
    ),
    Route(
        "GET",
        "/api/sessions/{id}/webhooks",
        get_session_webhooks,
        "Every delivery attempt of the session's post-call webhook, in order",
        "sessions",
        response=WebhookAttempt,
        many=True,
        owns="session",
        owned_param="id",
    ),
    Route(
        "GET",
        "/api/sessions/{id}/recording",
        get_recording,
        "The call's recording (audio/ogg, stereo: caller left, agent right; Range requests answer 206)",
        "sessions",
        raw=True,
        also=(206,),
        owns="session",
        owned_param="id",
    ),
    Route(
        "DELETE",
        "/api/sessions/{id}/recording",
        delete_recording,
        "Delete the call's recording (the file and the session's recording fields)",
        "sessions",
        response=Deleted,
        owns="session",
        owned_param="id",
    ),
    Route(
        "GET", "/api/dashboard/metrics", dashboard_metrics, "Dashboard counters", "dashboard", response=DashboardMetrics
    ),
]
