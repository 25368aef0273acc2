"""Repositories raise store errors; the error middleware turns them into the one error body."""

from __future__ import annotations

from aiohttp.test_utils import TestClient, TestServer

from api.app import create_app
from api.routing import Route
from core.store.errors import ConflictError, NotFoundError, StoreError
from tests.conftest import assert_error


class EmailTaken(ConflictError):
    """A subclass maps like its parent."""


async def test_store_errors_become_404_409_and_500(settings, store):
    def raising(exc: Exception):
        async def handler(call):
            raise exc

        handler.__name__ = f"raise_{type(exc).__name__}"
        return handler

    extra = [
        Route("GET", f"/api/test/{name}", raising(exc), "test", "test", public=True)
        for name, exc in [
            ("missing", NotFoundError("user usr_x not found")),
            ("taken", EmailTaken("a user with email a@b.c already exists")),
            ("odd", StoreError("something else")),
        ]
    ]
    async with TestClient(TestServer(create_app(settings, store=store, extra_routes=extra), host="127.0.0.1")) as c:
        body = await assert_error(await c.get("/api/test/missing"), 404, "not_found")
        assert body["detail"] == "user usr_x not found"
        await assert_error(await c.get("/api/test/taken"), 409, "conflict")
        body = await assert_error(await c.get("/api/test/odd"), 500, "internal_error")
        assert "something else" not in body["detail"]
