"""The route table: each route declares its body, query and response models once; the same declaration parses
requests, serialises responses and generates the OpenAPI document, so the document cannot drift from the handlers.

Handlers follow one shape: parse (done here), call one service/repository function, return a model or plain data
that validates against the declared response model.
"""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, NotRequired, TypedDict

from aiohttp import web
from pydantic import BaseModel, TypeAdapter, ValidationError

from core.jsondepth import MAX_DEPTH, too_deep

from .auth import Principal, principal
from .errors import InvalidJson, JsonTooDeep, ValidationFailed, from_validation_error
from .tenancy import Tenancy


class Owns(TypedDict):
    """The ownership arguments of routes on one kind of object, spread into each `Route(..., **OWN)`."""

    owns: str
    owned_param: str
    tenant_scoped: NotRequired[bool]


@dataclass
class RequestContext:
    """What a handler receives: the request, its verified principal (None on public routes) and parsed inputs."""

    request: web.Request
    principal: Principal | None
    body: Any
    query: Any
    params: dict[str, str]
    raw_body: Any = None
    tenancy: Tenancy | None = None

    @property
    def user_id(self) -> str:
        assert self.principal is not None
        return self.principal.user_id

    @property
    def tenant_id(self) -> str:
        """The tenant the request acts in: every row it reads or writes has this ``owner_id``."""
        assert self.tenancy is not None, "route is not tenant-scoped"
        return self.tenancy.id


Handler = Callable[[RequestContext], Awaitable[Any]]


@dataclass(frozen=True)
class Route:
    method: str
    path: str
    handler: Handler
    summary: str
    tag: str
    response: type[BaseModel] | None = None
    many: bool = False
    nullable: bool = False
    body: type[BaseModel] | None = None
    query: type[BaseModel] | None = None
    status: int = 200
    public: bool = False
    raw: bool = False  # handler returns its own web.Response (webhooks, non-JSON)
    exact_numbers: bool = False  # JSON numbers with a fraction are parsed as Decimal, never float
    owned_param: str | None = None  # path parameter naming an object owned by the caller's tenant...
    owns: str | None = None  # ...and the kind of object it is (a key of OWNERSHIP), checked before the handler runs
    unowned: str = ""  # or why a path parameter names nothing the caller must own (e.g. a public webhook)
    tenant_scoped: bool = True  # resolve the caller's tenant (X-Tenant-ID) and refuse a suspended one
    errors: tuple[int, ...] = ()
    also: tuple[int, ...] = ()  # other success statuses with the same body (e.g. 200 for an idempotent replay)
    seed_errors: bool = False  # error bodies add 004's `error` (a title) and `details` (the detail) keys

    def response_adapter(self) -> TypeAdapter[Any]:
        assert self.response is not None
        tp: Any = self.response
        if self.many:
            tp = list[tp]
        if self.nullable:
            tp = tp | None
        return TypeAdapter(tp)


# kind -> async check(ctx, id) raising the store's NotFoundError (or NotFound) unless the caller may see it.
OwnershipCheck = Callable[[RequestContext, str], Awaitable[None]]
OWNERSHIP: dict[str, OwnershipCheck] = {}


def ownership(kind: str) -> Callable[[OwnershipCheck], OwnershipCheck]:
    def register_check(fn: OwnershipCheck) -> OwnershipCheck:
        OWNERSHIP[kind] = fn
        return fn

    return register_check


_PARAM = re.compile(r"{(\w+)}")


def path_params(path: str) -> list[str]:
    return _PARAM.findall(path)


async def _refuse_deep_body(request: web.Request) -> None:
    """Every body a route receives, parsed here or by its handler (webhooks, 004's ingest), is scanned before any
    parser recurses into it; ``request.read()`` keeps the bytes for whoever parses them next."""
    if request.body_exists and too_deep(await request.read()):
        raise JsonTooDeep(f"request body nests deeper than {MAX_DEPTH} levels")


async def _read_body(request: web.Request, model: type[BaseModel], *, exact: bool = False) -> tuple[BaseModel, Any]:
    raw = await request.read()
    from_csv = getattr(model, "from_csv", None)
    if not raw.strip():
        data: Any = {}
    elif request.content_type == "text/csv" and from_csv is not None:  # a body that may come as a CSV file
        try:
            data = from_csv(raw.decode("utf-8-sig"))
        except (ValueError, UnicodeDecodeError) as e:
            raise ValidationFailed(f"request body is not a usable CSV: {e}") from None
    else:
        try:
            data = json.loads(raw, parse_float=Decimal) if exact else json.loads(raw)
        except (ValueError, UnicodeDecodeError) as e:
            raise InvalidJson(f"request body is not valid JSON: {e}") from None
    if not isinstance(data, dict):
        raise ValidationFailed("request body must be a JSON object")
    try:
        return model.model_validate(data), data
    except ValidationError as e:
        raise from_validation_error(e, where="body") from None


def _read_query(request: web.Request, model: type[BaseModel]) -> BaseModel:
    data: dict[str, Any] = {}
    for key in request.query:
        values = request.query.getall(key)
        data[key] = values[-1]
    try:
        return model.model_validate(data)
    except ValidationError as e:
        raise from_validation_error(e, where="query") from None


SEND_CHUNK_BYTES = 256 * 1024


async def send_json(request: web.Request, payload: bytes, *, status: int = 200) -> web.StreamResponse:
    """An already serialised JSON body. A large one (a page of big agents) is written in chunks, giving the loop a
    turn after each, so copying it out never holds every other request and socket on this loop (the loop monitor's
    lateness) for its whole length."""
    if len(payload) <= SEND_CHUNK_BYTES:
        return web.Response(body=payload, status=status, content_type="application/json")
    resp = web.StreamResponse(status=status)
    resp.content_type = "application/json"
    resp.content_length = len(payload)
    await resp.prepare(request)
    view = memoryview(payload)
    for start in range(0, len(payload), SEND_CHUNK_BYTES):
        await resp.write(view[start : start + SEND_CHUNK_BYTES])  # waits for the socket when its buffer is full
        await asyncio.sleep(0)
    await resp.write_eof()
    return resp


TenancyResolver = Callable[[web.Request, Principal], Awaitable[Tenancy]]
TENANCY: web.AppKey[TenancyResolver] = web.AppKey("tenancy_resolver")


def check_declared(route: Route) -> None:
    """A route naming an object in its path says what it is (and the table checks the caller may see it), or says
    why it needs no check."""
    params = path_params(route.path)
    if not params:
        return
    if route.owns is None and not route.unowned:
        raise ValueError(f"{route.method} {route.path}: declare owns= (and owned_param=) or unowned=")
    if route.owns is not None:
        if route.owned_param not in params:
            raise ValueError(f"{route.method} {route.path}: owned_param must name one of {params}")
        if route.public:
            raise ValueError(f"{route.method} {route.path}: a public route cannot check ownership")


def make_handler(route: Route) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
    check_declared(route)
    adapter = route.response_adapter() if route.response is not None and not route.raw else None
    check = None
    if route.owns is not None:
        check = OWNERSHIP.get(route.owns)
        if check is None:
            raise ValueError(f"{route.method} {route.path}: no ownership check registered for {route.owns!r}")

    async def handler(request: web.Request) -> web.StreamResponse:
        who = None if route.public else principal(request)
        tenancy = None
        if who is not None and route.tenant_scoped:
            tenancy = await request.app[TENANCY](request, who)
        ctx = RequestContext(
            request=request, principal=who, body=None, query=None, params=dict(request.match_info), tenancy=tenancy
        )
        if check is not None and route.owned_param is not None:
            await check(ctx, ctx.params[route.owned_param])  # before the body is read: not yours, 404
        await _refuse_deep_body(request)
        if route.body is not None:
            ctx.body, ctx.raw_body = await _read_body(request, route.body, exact=route.exact_numbers)
        if route.query is not None:
            ctx.query = _read_query(request, route.query)
        result = await route.handler(ctx)
        if route.raw:
            return result
        assert adapter is not None
        if isinstance(result, BaseModel):
            result = result.model_dump()
        payload = adapter.dump_json(adapter.validate_python(result))
        return web.Response(body=payload, status=route.status, content_type="application/json")

    handler.__name__ = route.handler.__name__
    return handler


def register(app: web.Application, routes: list[Route]) -> None:
    """Each route is served with and without a trailing slash, and PATCH beside every PUT."""
    for route in routes:
        handler = make_handler(route)
        methods = [route.method] + (["PATCH"] if route.method == "PUT" else [])
        for method in methods:
            app.router.add_route(method, route.path, handler)
            if route.path != "/":
                app.router.add_route(method, route.path.rstrip("/") + "/", handler)
