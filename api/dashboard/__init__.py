"""The web dashboard: one page at ``/`` and its files under ``/static/<digest>/...``, shipped inside this package.

There is no build step: the page is plain JavaScript modules, a stylesheet and the vendored LiveKit client. The
``<digest>`` in every asset URL is a hash of all the files, so one changed file changes every URL (modules import
each other relatively, so they all inherit the prefix) and assets can be cached forever. ``/`` and ``/static/`` are
outside ``/api`` and ``/tenants``, so the auth middleware leaves them public; every API call the page makes carries
the signed-in user's credentials like any other client's.
"""

from __future__ import annotations

import hashlib
import json
import mimetypes
from pathlib import Path

from aiohttp import web

from core.settings import Settings

from ..version import VERSION

STATIC = Path(__file__).parent / "static"
IMMUTABLE = "public, max-age=31536000, immutable"
# Scripts and styles only from here; the LiveKit server the Talk page joins may live on any host.
CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; media-src 'self' blob:; "
    "connect-src 'self' ws: wss: http: https:; object-src 'none'; base-uri 'none'; frame-ancestors 'none'"
)
TYPES = {
    ".js": "text/javascript",
    ".mjs": "text/javascript",
    ".css": "text/css",
    ".svg": "image/svg+xml",
    ".json": "application/json",
    ".woff2": "font/woff2",
    ".txt": "text/plain",
    ".html": "text/html",
}


def asset_digest(root: Path = STATIC) -> str:
    """A hash of every shipped file's path and bytes: the cache-busting part of the asset URLs."""
    h = hashlib.sha256()
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        h.update(path.relative_to(root).as_posix().encode() + b"\0")
        h.update(path.read_bytes())
    return h.hexdigest()[:12]


def page_config(settings: Settings, assets: str) -> dict[str, object]:
    """What the page needs to know before its first request: where its files are and which sign-ins exist."""
    clerk = bool(settings.clerk_issuer or settings.clerk_jwks_url)
    return {"assets": assets, "version": VERSION, "localLogin": not clerk, "clerk": clerk}


def add_dashboard(app: web.Application, settings: Settings) -> None:
    digest = asset_digest()
    assets = f"/static/{digest}"
    config = json.dumps(page_config(settings, assets)).replace("<", "\\u003c")
    page = (STATIC / "index.html").read_text().replace("%ASSETS%", assets).replace("%CONFIG%", config)

    async def index(request: web.Request) -> web.Response:
        return web.Response(
            text=page,
            content_type="text/html",
            charset="utf-8",
            headers={
                "Cache-Control": "no-cache",
                "Content-Security-Policy": CSP,
                "X-Content-Type-Options": "nosniff",
                "Referrer-Policy": "no-referrer",
            },
        )

    root = STATIC.resolve()

    async def asset(request: web.Request) -> web.StreamResponse:
        rel = request.match_info["path"]
        path = (root / rel).resolve()
        if root not in path.parents or any(part.startswith(".") for part in Path(rel).parts) or not path.is_file():
            raise web.HTTPNotFound()
        # An old page (loaded before an upgrade) still gets today's file, but must not cache it under its old URL.
        cache = IMMUTABLE if request.match_info["digest"] == digest else "no-cache"
        ctype = TYPES.get(path.suffix) or mimetypes.guess_type(path.name)[0] or "application/octet-stream"
        return web.FileResponse(
            path, headers={"Cache-Control": cache, "Content-Type": ctype, "X-Content-Type-Options": "nosniff"}
        )

    app.router.add_get("/", index)
    app.router.add_get("/static/{digest}/{path:.+}", asset)
