"""Typed application keys: everything a handler reaches through the app lives here."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp
from aiohttp import web

from core.cluster import ClusterNode
from core.livekit import Gateways, LiveKitGateway
from core.netpolicy import NetPolicy
from core.recordings import RecordingStorage
from core.secrets import SecretBox
from core.settings import Settings
from core.store.db import Store
from pipelines.pricing import PriceBook

from .auth import LocalIssuer, Verifier
from .loopmon import LoopMonitor
from .services.agents import AgentListCache
from .services.chat import ChatService
from .services.dispatch import DispatchWatchdog
from .services.events import EventHub
from .services.sockets import SocketGuard
from .services.transcripts import TranscriptCache
from .tenancy import Tenants

SETTINGS = web.AppKey("settings", Settings)
STORE = web.AppKey("store", Store)
VERIFIER = web.AppKey("verifier", Verifier)
TENANTS = web.AppKey("tenants", Tenants)  # API keys, X-Tenant-ID, admins, tenant records
ISSUER = web.AppKey("local_issuer", LocalIssuer)  # only with the embedded issuer
LIVEKIT = web.AppKey("livekit", LiveKitGateway)  # the product's own LiveKit server
GATEWAYS = web.AppKey("livekit_gateways", Gateways)  # ...and clients' own ones
SECRETS = web.AppKey("secret_box", SecretBox)
NETPOLICY = web.AppKey("outbound_policy", NetPolicy)  # what a tenant-set URL may reach (core/netpolicy.py)
PRICEBOOK = web.AppKey("pricebook", PriceBook)
AGENT_LISTS = web.AppKey("agent_lists", AgentListCache)  # serialised GET /api/agents per owner
TRANSCRIPTS = web.AppKey("transcripts", TranscriptCache)  # validated transcripts by session and version
LOOP = web.AppKey("loop_monitor", LoopMonitor)
HTTP = web.AppKey("http_session", aiohttp.ClientSession)
STARTED = web.AppKey("started_monotonic", float)
# Reports the LiveKit side for /health: {"status": ..., ...}; the worker installs a richer one.
LIVEKIT_HEALTH: web.AppKey[Callable[[], Awaitable[dict[str, Any]]]] = web.AppKey("livekit_health")
# Why no worker of this process can take a call now (None: it can); absent when this process runs no worker.
WORKER_CAPACITY: web.AppKey[Callable[[], Awaitable[str | None]]] = web.AppKey("worker_capacity")
CHAT = web.AppKey("chat", ChatService)  # text and ConversationRelay conversations, their tasks and sockets
EVENTS = web.AppKey("live_events", EventHub)  # the /events/ws fan-out
SOCKETS = web.AppKey("socket_guard", SocketGuard)  # caps and credential re-checks of /ws/chat and /events/ws
DISPATCH_WATCHDOG = web.AppKey("dispatch_watchdog", DispatchWatchdog)  # only with the product's LiveKit configured
NODE = web.AppKey("cluster_node", ClusterNode)  # this process as a node of the cluster (core/cluster.py)
RECORDINGS: web.AppKey[RecordingStorage] = web.AppKey("recordings")  # where call recordings are kept
