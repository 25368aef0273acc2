"""Typed errors and the one place they become HTTP responses.

Every 4xx/5xx the API sends has the same body: ``{"detail": str, "status_code": int, "type": str}``
(the shape of the Autonomite API), optionally with ``errors`` listing field problems.
"""

from __future__ import annotations

import json
import logging
from typing import Any

from aiohttp import web
from pydantic import ValidationError

from core.store.errors import (
    ConflictError,
    InvalidReferenceError,
    InvalidValueError,
    LimitError,
    NotFoundError,
    StorageUnavailable,
    StoreError,
)

log = logging.getLogger("voxarena.api")


class ApiError(Exception):
    status_code = 500
    type = "internal_error"

    def __init__(self, detail: str, *, errors: list[dict[str, Any]] | None = None) -> None:
        super().__init__(detail)
        self.detail = detail
        self.errors = errors
        self.headers: dict[str, str] = {}


class BadRequest(ApiError):
    status_code = 400
    type = "bad_request"


class InvalidJson(BadRequest):
    type = "invalid_json"


class JsonTooDeep(BadRequest):
    type = "json_too_deep"


class Unauthorized(ApiError):
    status_code = 401
    type = "unauthorized"


class Forbidden(ApiError):
    status_code = 403
    type = "forbidden"


class NotFound(ApiError):
    status_code = 404
    type = "not_found"


class Conflict(ApiError):
    status_code = 409
    type = "conflict"


class ValidationFailed(ApiError):
    status_code = 422
    type = "validation_error"


class RateLimited(ApiError):
    status_code = 429
    type = "rate_limited"

    def __init__(self, detail: str, *, retry_after: int) -> None:
        super().__init__(detail)
        self.headers = {"Retry-After": str(max(1, retry_after))}


class ConnectionLimit(ApiError):
    status_code = 429
    type = "connection_limit"


class Unavailable(ApiError):
    status_code = 503
    type = "service_unavailable"

    def __init__(self, detail: str, *, retry_after: int | None = None) -> None:
        super().__init__(detail)
        self.headers = {"Retry-After": str(retry_after)} if retry_after is not None else {}


class BadGateway(ApiError):
    status_code = 502
    type = "upstream_error"


def error_body(status: int, type_: str, detail: str, errors: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    body: dict[str, Any] = {"detail": detail, "status_code": status, "type": type_}
    if errors:
        body["errors"] = errors
    return body


def error_response(err: ApiError, request: web.Request | None = None) -> web.Response:
    return _respond(request, error_body(err.status_code, err.type, err.detail, err.errors), err.headers or None)


# (method, path) of 004's routes: their error bodies also carry 004's keys ({"error": <title>, "details": <detail>})
# beside the usual ones, and their invalid input is a 400 (004's status) where the other seeds' routes answer 422.
# By method too: POST /api/campaigns is the product's, where GET /api/campaigns is 004's.
SEED_ERROR_PATHS = web.AppKey("seed_error_paths", frozenset)
_SEED_TITLES = {
    400: "Invalid request format",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not found",
    413: "Payload too large",
    429: "Too many requests",
    500: "Internal server error",
    503: "Service unavailable",
}


def _respond(request: web.Request | None, body: dict[str, Any], headers: dict[str, str] | None = None) -> web.Response:
    seed_paths = request.app.get(SEED_ERROR_PATHS, frozenset()) if request is not None else frozenset()
    if request is not None and (request.method, request.path.rstrip("/") or "/") in seed_paths:
        if body["status_code"] == 422:
            body["status_code"] = 400
        body["error"] = _SEED_TITLES.get(body["status_code"], "Request failed")
        body["details"] = body["detail"]
    return web.json_response(body, status=body["status_code"], headers=headers)


def from_validation_error(e: ValidationError, *, where: str) -> ValidationFailed:
    errors = []
    for item in e.errors(include_url=False, include_context=False, include_input=False):
        errors.append({"loc": [where, *item["loc"]], "msg": item["msg"], "type": item["type"]})
    first = errors[0]
    field = ".".join(str(p) for p in first["loc"][1:]) or where
    detail = f"{where} {field}: {first['msg']}" if field != where else f"{where}: {first['msg']}"
    if len(errors) > 1:
        detail += f" (and {len(errors) - 1} more)"
    return ValidationFailed(detail, errors=errors)


_HTTP_TYPES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    409: "conflict",
    413: "payload_too_large",
    415: "unsupported_media_type",
    422: "validation_error",
    429: "rate_limited",
}


# What a repository's error means over HTTP, looked up along the exception's class hierarchy.
_STORE_ERRORS: dict[type[StoreError], type[ApiError]] = {
    NotFoundError: NotFound,
    ConflictError: Conflict,
    InvalidReferenceError: ValidationFailed,
    InvalidValueError: ValidationFailed,
}


LIMIT_RETRY_AFTER_SECONDS = 5
STORAGE_RETRY_AFTER_SECONDS = 5


def store_error(e: StoreError) -> ApiError:
    if isinstance(e, StorageUnavailable):  # disk full, read-only, I/O error: the product's trouble, not the caller's
        unavailable = Unavailable(str(e), retry_after=STORAGE_RETRY_AFTER_SECONDS)
        unavailable.type = "storage_unavailable"
        return unavailable
    if isinstance(e, LimitError):  # a tenant limit: 429 for calls (try again soon), 403 for the rest
        if e.kind == "concurrency_limit":
            limited = RateLimited(str(e), retry_after=LIMIT_RETRY_AFTER_SECONDS)
            limited.type = e.kind
            return limited
        forbidden = Forbidden(str(e))
        forbidden.type = e.kind
        return forbidden
    for cls in type(e).__mro__:
        api_error = _STORE_ERRORS.get(cls)
        if api_error is not None:
            return api_error(str(e))
    return ApiError("internal server error")


def exception_response(request: web.Request, exc: Exception) -> web.Response:
    """The one error body for any exception a handler raised; aiohttp's redirects (status < 400) are re-raised."""
    if isinstance(exc, StoreError):
        mapped = store_error(exc)
        if type(mapped) is ApiError:
            log.error("unmapped store error on %s %s", request.method, request.path, exc_info=exc)
        exc = mapped
    if isinstance(exc, ApiError):
        return error_response(exc, request)
    if isinstance(exc, web.HTTPException):
        if exc.status < 400:
            raise exc
        detail = exc.reason
        if exc.status == 405:
            detail = f"method {request.method} is not allowed on {request.path}"
        elif exc.status == 404:
            detail = f"no route for {request.path}"
        elif exc.status == 413:
            detail = "request body is too large"
        return _respond(request, error_body(exc.status, _HTTP_TYPES.get(exc.status, "http_error"), detail))
    log.error("unhandled error on %s %s", request.method, request.path, exc_info=exc)
    return _respond(request, error_body(500, "internal_error", "internal server error"))


@web.middleware
async def error_middleware(request: web.Request, handler: Any) -> web.StreamResponse:
    """Outermost middleware: turns every exception, including aiohttp's own, into the one error body."""
    try:
        return await handler(request)
    except Exception as e:
        return exception_response(request, e)


def dumps(data: Any) -> str:
    return json.dumps(data, separators=(",", ":"), ensure_ascii=False)
