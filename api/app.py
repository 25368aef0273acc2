"""The application factory. It never reads the environment: settings (and optionally a ready store) come in."""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import aiohttp
from aiohttp import web

from core.cluster import ClusterNode, default_node_id
from core.dispatch_meta import DispatchSigner
from core.livekit import Gateways, LiveKitGateway
from core.netpolicy import Lookup, NetPolicy
from core.periodic import Periodic
from core.recordings import SWEEP_SECONDS, sweep_expired
from core.recordings import storage_for as recordings_storage
from core.secrets import SecretBox
from core.settings import Settings
from core.store import clients as clients_repo
from core.store.db import Store
from pipelines.pricing import PriceBook

from . import openapi, ownership, ratelimit  # noqa: F401  (ownership registers the route table's checks)
from .auth import LOCAL_ISSUER, JwksCache, Verifier, auth_middleware, http_jwks_fetch, local_issuer
from .dashboard import add_dashboard
from .errors import SEED_ERROR_PATHS, ApiError, error_middleware
from .keys import (
    AGENT_LISTS,
    CHAT,
    DISPATCH_WATCHDOG,
    EVENTS,
    GATEWAYS,
    HTTP,
    ISSUER,
    LIVEKIT,
    LIVEKIT_HEALTH,
    LOOP,
    NETPOLICY,
    NODE,
    PRICEBOOK,
    RECORDINGS,
    SECRETS,
    SETTINGS,
    SOCKETS,
    STARTED,
    STORE,
    TENANTS,
    TRANSCRIPTS,
    VERIFIER,
    WORKER_CAPACITY,
)
from .loopmon import LoopMonitor
from .routes import (
    accounts,
    agents,
    apikeys,
    calls,
    campaigns,
    chat,
    clients,
    costs,
    events,
    livekit,
    meta,
    phone_numbers,
    relay,
    sessions,
    tenants,
)
from .routes import analytics as analytics_routes
from .routes import ingest as ingest_routes
from .routes import metrics as metrics_routes
from .routing import TENANCY, Route, register
from .schemas.events import event_wire
from .services import clients as clients_service
from .services.accounts import LOGIN_THROTTLE, LoginThrottle
from .services.agents import AgentListCache
from .services.callbacks import CallbackSender
from .services.chat import ChatService
from .services.dialer import Dialer
from .services.dispatch import DispatchWatchdog
from .services.events import EventHub
from .services.post_call import PostCallSender
from .services.sockets import SocketGuard, SocketLeases
from .services.transcripts import TranscriptCache
from .tenancy import Tenants
from .version import VERSION

log = logging.getLogger("voxarena.api")

ROUTE_MODULES = [
    meta,
    agents,
    sessions,
    livekit,
    costs,
    tenants,
    apikeys,
    accounts,
    clients,
    calls,
    chat,
    relay,
    phone_numbers,
    events,
    campaigns,
]
ROUTE_MODULES += [ingest_routes, metrics_routes, analytics_routes]


def all_routes(extra: list[Route] | None = None) -> list[Route]:
    routes: list[Route] = []
    for module in ROUTE_MODULES:
        routes.extend(module.ROUTES)
    return routes + (extra or [])


async def _no_livekit() -> dict[str, Any]:
    return {"status": "disabled", "detail": "no LiveKit worker in this process"}


def create_app(
    settings: Settings,
    *,
    store: Store | None = None,
    extra_routes: list[Route] | None = None,
    livekit_health: Callable[[], Awaitable[dict[str, Any]]] | None = None,
    worker_capacity: Callable[[], Awaitable[str | None]] | None = None,
    worker_slots: Callable[[], int] | None = None,
    jwks_fetch: Callable[[], Awaitable[dict[str, Any]]] | None = None,
    rate_limiter: ratelimit.RateLimiter | None = None,
    login_throttle: LoginThrottle | None = None,
    net_lookup: Lookup | None = None,
) -> web.Application:
    routes = all_routes(extra_routes)
    public_paths = {r.path for r in routes if r.public}
    # Routes outside /api and /tenants that need a credential all the same (Autonomite's /trigger-agent, /ws/...).
    guarded_elsewhere = {r.path for r in routes if not r.public and not r.path.startswith(("/api/", "/tenants"))}

    def is_public(request: web.Request) -> bool:
        path = request.path.rstrip("/") or "/"
        guarded = path.startswith("/api/") or path == "/tenants" or path.startswith("/tenants/")
        resource = request.match_info.route.resource
        if resource is not None and resource.canonical.rstrip("/") in guarded_elsewhere:
            guarded = True
        return path in public_paths or not guarded

    def http() -> aiohttp.ClientSession:
        return app[HTTP]

    if settings.clerk_issuer or settings.clerk_jwks_url:
        url = settings.clerk_jwks_url or settings.clerk_issuer.rstrip("/") + "/.well-known/jwks.json"
        fetch = jwks_fetch or http_jwks_fetch(url, http)
        issuer_claim: str | None = settings.clerk_issuer or None
        local = None
    else:
        local = local_issuer(settings)

        async def local_fetch() -> dict[str, Any]:
            return local.jwks()

        fetch = jwks_fetch or local_fetch
        issuer_claim = LOCAL_ISSUER
    verifier = Verifier(
        JwksCache(
            fetch, min_refresh_seconds=settings.jwks_min_refresh_seconds, max_age_seconds=settings.jwks_cache_seconds
        ),
        issuer=issuer_claim,
        authorized_parties=settings.clerk_authorized_parties,
        audience=settings.jwt_audience,
        leeway_seconds=settings.jwt_leeway_seconds,
    )

    tenants = Tenants(lambda: app[STORE], settings)

    async def user_of(token: str) -> str | None:
        """The user a bearer JWT names, verified (the verifier's cache makes auth's own check free after this)."""
        try:
            return (await verifier.verify(token)).user_id
        except ApiError:
            return None

    async def key_ok(key: str) -> bool:
        """Whether an API key is live (for the rate limiter: a refused key counts against its address)."""
        try:
            await tenants.verify_key(key, None)
        except ApiError:
            return False
        return True

    limiter = rate_limiter or ratelimit.RateLimiter(settings.redis_url, timeout_seconds=settings.redis_timeout_seconds)
    app = web.Application(
        middlewares=[
            error_middleware,
            ratelimit.ratelimit_middleware(limiter, ratelimit.default_identify(settings, user_of, key_ok)),
            auth_middleware(verifier, is_public, tenants.verify_key),
        ],
        client_max_size=settings.max_body_bytes,
    )
    app[SETTINGS] = settings
    app[SEED_ERROR_PATHS] = frozenset((r.method, r.path) for r in routes if r.seed_errors)
    app[PRICEBOOK] = PriceBook.load(settings.pricing_file or None)  # a malformed price book refuses to start
    app[RECORDINGS] = recordings_storage(settings)
    app[VERIFIER] = verifier
    app[TENANTS] = tenants
    app[TENANCY] = tenants.resolve
    app[ratelimit.RATE_OVERRIDE] = tenants.rate_override
    # the lists are cached by this process only while it is the only one serving the store (SQLite): on PostgreSQL
    # another node may change an agent at any moment, and a cached list would be stale there
    app[AGENT_LISTS] = AgentListCache(max_bytes=0) if settings.database_url else AgentListCache()
    app[TRANSCRIPTS] = TranscriptCache()  # exact on any store: each read checks the transcripts' versions
    app[STARTED] = time.monotonic()
    app[ratelimit.RATE_LIMITER] = limiter
    app[LOGIN_THROTTLE] = login_throttle or LoginThrottle(
        redis_url=settings.redis_url, redis_timeout_seconds=settings.redis_timeout_seconds
    )
    app[LIVEKIT_HEALTH] = livekit_health or _no_livekit
    if worker_capacity is not None:
        app[WORKER_CAPACITY] = worker_capacity
    if local is not None:
        app[ISSUER] = local
    app[meta.OPENAPI] = openapi.build(routes, version=VERSION)
    if store is not None:
        app[STORE] = store
    box = SecretBox.from_settings(settings.secret_key, settings.data_dir)
    app[SECRETS] = box
    gateway = LiveKitGateway(
        settings.livekit_url,
        settings.livekit_api_key,
        settings.livekit_api_secret,
        agent_name=settings.agent_name,
        signer=DispatchSigner.from_secret_box(box),
    )
    app[LIVEKIT] = gateway

    async def client_livekit(owner_id: str, client_id: str) -> dict[str, str] | None:
        row = await app[STORE].read(clients_repo.get, owner_id, client_id)
        return clients_service.livekit_of(box, row)

    policy = NetPolicy.of(settings.outbound_http_allowed_hosts, net_lookup)
    app[NETPOLICY] = policy
    gateways = Gateways(gateway, client_livekit, policy)
    app[GATEWAYS] = gateways

    async def resources(app: web.Application) -> AsyncIterator[None]:
        owned = None
        if STORE not in app:
            owned = Store(settings.database_target, secrets=box)
            app[STORE] = owned
        app[HTTP] = aiohttp.ClientSession()
        app[LOOP] = LoopMonitor()
        app[LOOP].start()
        node = ClusterNode(
            app[STORE],
            settings.node_id or default_node_id(),
            heartbeat_seconds=settings.node_heartbeat_seconds,
            lost_seconds=settings.node_lost_seconds,
            close_room=lambda row: _close_room(gateways, row),
            open_slots=worker_slots,
        )
        app[NODE] = node
        await node.start()
        watchdog = None
        if gateway.configured:
            watchdog = DispatchWatchdog(
                app[STORE],
                gateways,
                timeout_seconds=settings.dispatch_timeout_seconds,
                lease=node.lease("dispatch-watchdog", 10.0),
            )
            app[DISPATCH_WATCHDOG] = watchdog
            watchdog.start()
        dialer = None
        if gateway.configured and settings.campaign_dial_interval_seconds > 0:
            # campaigns dial on the product's LiveKit server, one node at a time
            dialer = Dialer(
                app[STORE],
                gateway,
                settings,
                capacity=worker_capacity,
                lease=node.lease("campaign-dialer", max(10.0, 3 * settings.campaign_dial_interval_seconds)),
                interval_seconds=settings.campaign_dial_interval_seconds,
            )
            dialer.start()
        # the outboxes: outbound-call callbacks, agents' post-call webhooks
        senders = [
            sender(
                app[STORE],
                policy,
                box=box,
                max_attempts=settings.callback_max_attempts,
                backoff_seconds=settings.callback_backoff_seconds,
            )
            for sender in (CallbackSender, PostCallSender)
        ]
        for sender in senders:
            sender.start()
        app[CHAT] = ChatService(app[STORE], settings, app[PRICEBOOK], app[NETPOLICY], app[SECRETS])
        app[CHAT].lease = node.lease("text-sessions", max(10.0, 3 * min(30.0, settings.text_session_idle_seconds / 4)))
        app[CHAT].start()
        hub = EventHub(
            app[STORE],
            queue_size=settings.event_queue_size,
            max_connections=settings.event_max_connections,
            retention_seconds=settings.event_retention_seconds,
            to_wire=event_wire,
            prune_lease=node.lease("live-events-prune", 1800.0),
        )
        app[EVENTS] = hub
        hub.start()
        # recordings past VOXARENA_RECORDING_RETENTION_DAYS: deleted by one node of the cluster, hourly
        retention = Periodic(
            "recording-retention",
            SWEEP_SECONDS,
            lambda: sweep_expired(app[STORE], app[RECORDINGS], retention_days=settings.recording_retention_days),
            log,
            lease=node.lease("recording-retention", 3 * SWEEP_SECONDS),
        )
        if settings.recording_retention_days > 0:
            retention.start()
        guard = SocketGuard(
            app[STORE],
            SocketLeases(settings.redis_url, timeout_seconds=settings.redis_timeout_seconds),
            admins=settings.admin_users,
            interval=settings.socket_recheck_seconds,
        )
        app[SOCKETS] = guard
        guard.start()
        yield
        await retention.stop()
        await hub.stop()
        await app[CHAT].stop()
        await guard.stop()  # after the sockets it watches are closed
        for sender in senders:
            await sender.stop()
        if dialer is not None:
            await dialer.stop()
        if watchdog is not None:
            await watchdog.stop()
        await node.stop()  # after the worker drained (worker/server.py stops it first): the node's calls are over
        await app[LOOP].stop()
        await gateway.aclose()
        await gateways.aclose()
        await app[LOGIN_THROTTLE].aclose()
        await app[HTTP].close()
        if owned is not None:
            owned.close()

    app.cleanup_ctx.append(resources)

    async def close_streams(app: web.Application) -> None:  # before aiohttp waits for open handlers
        if EVENTS in app:
            app[EVENTS].close_all()

    app.on_shutdown.append(close_streams)
    app.on_response_prepare.append(ratelimit.add_headers)
    if rate_limiter is None:  # one handed in belongs to the caller
        app.cleanup_ctx.append(ratelimit.cleanup_ctx(limiter))
    register(app, routes)
    add_dashboard(app, settings)
    return app


async def _close_room(gateways: Gateways, row: dict[str, Any]) -> None:
    """A lost node's call: its room goes, so the caller hears the call end instead of silence."""
    gateway = await gateways.for_session(row)
    await gateway.delete_room(row["room_name"])
