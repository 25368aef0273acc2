"""The dashboard's page and files: public, cache-busted, shipped in the package; every API behind them stays
authenticated."""

from __future__ import annotations

import re

from api.dashboard import STATIC, asset_digest


async def _page(client) -> tuple[str, str]:
    resp = await client.get("/")
    assert resp.status == 200
    html = await resp.text()
    assets = re.search(r'src="(/static/[0-9a-f]{12})/js/app.js"', html).group(1)
    return html, assets


async def test_the_page_is_public_and_names_its_assets_by_content_hash(client):
    resp = await client.get("/")
    assert resp.status == 200 and resp.content_type == "text/html"
    assert resp.headers["Cache-Control"] == "no-cache"
    assert "script-src 'self'" in resp.headers["Content-Security-Policy"]
    html, assets = await _page(client)
    assert assets == f"/static/{asset_digest()}"
    assert '"localLogin": true' in html  # the embedded issuer: local accounts can sign in


async def test_assets_are_served_with_their_types_and_cached_forever_under_the_current_hash(client):
    _, assets = await _page(client)
    for path, ctype in [
        ("js/app.js", "text/javascript"),
        ("js/pages/campaigns.js", "text/javascript"),
        ("app.css", "text/css"),
        ("vendor/livekit-client/livekit-client.umd.js", "text/javascript"),
    ]:
        resp = await client.get(f"{assets}/{path}")
        assert resp.status == 200, path
        assert resp.content_type == ctype
        assert resp.headers["Cache-Control"] == "public, max-age=31536000, immutable"
        assert await resp.read() == (STATIC / path).read_bytes()
    stale = await client.get("/static/000000000000/js/app.js")
    assert stale.status == 200 and stale.headers["Cache-Control"] == "no-cache"


async def test_nothing_outside_the_static_folder_is_served(client):
    _, assets = await _page(client)
    for path in ["../__init__.py", "..%2F__init__.py", "js/../../__init__.py", "nope.js", "js"]:
        resp = await client.get(f"{assets}/{path}")
        assert resp.status == 404, path


async def test_the_apis_the_page_calls_still_need_credentials(client, auth):
    for path in ["/api/agents", "/api/sessions", "/api/costs/summary", "/api/calls/active", "/tenants"]:
        assert (await client.get(path)).status == 401, path
    assert (await client.get("/api/agents", headers=auth("alice"))).status == 200


def test_every_vendored_and_own_asset_ships_with_the_package():
    import tomllib
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    data = tomllib.loads((root / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]
    patterns = data["api.dashboard"]
    base = root / "api" / "dashboard"
    shipped = {p for pattern in patterns for p in base.glob(pattern) if p.is_file()}
    files = {p for p in STATIC.rglob("*") if p.is_file()}
    assert files and files <= shipped, sorted(str(p) for p in files - shipped)
    assert (STATIC / "vendor" / "livekit-client" / "VERSION").read_text().strip()


def test_with_clerk_configured_the_page_offers_a_clerk_token_instead_of_local_accounts(settings):
    from api.dashboard import page_config

    config = page_config(settings.with_(clerk_issuer="https://clerk.example.com"), "/static/abc")
    assert config["clerk"] is True and config["localLogin"] is False
    assert page_config(settings, "/static/abc")["localLogin"] is True
