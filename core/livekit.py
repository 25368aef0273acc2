"""The API's side of LiveKit: access tokens, agent dispatch, room control and webhook verification."""

from __future__ import annotations

import asyncio
import functools
import itertools
import logging
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import Any, ParamSpec, TypeVar

import aiohttp
from google.protobuf.duration_pb2 import Duration
from livekit import api as lk

from core.control import CONTROL_TOPIC, ControlMessage
from core.dispatch_meta import DispatchMeta, DispatchSigner
from core.netpolicy import NetPolicy

log = logging.getLogger("voxarena.livekit")


INBOUND_ROOM_PREFIX = "vx-in-"  # the room of each inbound phone call (a dispatch rule per assigned number)


def sip_identity(call_id: str) -> str:
    """The room identity of an outbound call's SIP participant (the job dials it, the API hangs it up)."""
    return f"sip-{call_id}"


def http_url(url: str) -> str:
    if url.startswith("ws://"):
        return "http://" + url[5:]
    if url.startswith("wss://"):
        return "https://" + url[6:]
    return url


class LiveKitGateway:
    def __init__(self, url: str, api_key: str, api_secret: str, *, agent_name: str, signer: DispatchSigner) -> None:
        self.url = url
        self.api_key = api_key
        self.api_secret = api_secret
        self.agent_name = agent_name
        self.signer = signer  # every job it dispatches carries metadata signed for this server
        self._api: lk.LiveKitAPI | None = None
        self.receiver = lk.WebhookReceiver(lk.TokenVerifier(api_key, api_secret))

    @property
    def configured(self) -> bool:
        return bool(self.url and self.api_key and self.api_secret)

    @property
    def client(self) -> lk.LiveKitAPI:
        if self._api is None:  # created lazily, inside the running loop
            self._api = lk.LiveKitAPI(http_url(self.url), self.api_key, self.api_secret)
        return self._api

    async def aclose(self) -> None:
        if self._api is not None:
            await self._api.aclose()
            self._api = None

    def participant_token(self, *, identity: str, name: str, room: str, ttl: timedelta = timedelta(hours=1)) -> str:
        return (
            lk.AccessToken(self.api_key, self.api_secret)
            .with_identity(identity)
            .with_name(name)
            .with_ttl(ttl)
            .with_grants(
                lk.VideoGrants(room_join=True, room=room, can_publish=True, can_subscribe=True, can_publish_data=True)
            )
            .to_jwt()
        )

    async def dispatch(self, *, room: str, metadata: DispatchMeta) -> str:
        d = await self.client.agent_dispatch.create_dispatch(
            lk.CreateAgentDispatchRequest(
                agent_name=self.agent_name, room=room, metadata=self.signer.seal(metadata, server_key=self.api_key)
            )
        )
        return d.id

    async def delete_dispatch(self, dispatch_id: str, room: str) -> None:
        try:
            await self.client.agent_dispatch.delete_dispatch(dispatch_id, room)
        except lk.TwirpError as e:
            if e.code != lk.TwirpErrorCode.NOT_FOUND:
                raise

    async def caller_present(self, room: str) -> bool:
        """Someone other than an agent is in the room (LiveKit's view, for when webhooks are not configured)."""
        try:
            resp = await self.client.room.list_participants(lk.ListParticipantsRequest(room=room))
        except lk.TwirpError as e:
            if e.code == lk.TwirpErrorCode.NOT_FOUND:
                return False
            raise
        return any(p.kind != lk.ParticipantInfo.Kind.AGENT for p in resp.participants)

    async def remove_participant(self, room: str, identity: str) -> None:
        try:
            await self.client.room.remove_participant(lk.RoomParticipantIdentity(room=room, identity=identity))
        except lk.TwirpError as e:
            if e.code != lk.TwirpErrorCode.NOT_FOUND:
                raise

    async def send_control(self, room: str, message: ControlMessage) -> None:
        """A command for the job running the call in `room`. It travels as a reliable data packet sent by the
        server (no participant), which is how the job tells it from anything a caller could send."""
        await self.client.room.send_data(
            lk.SendDataRequest(room=room, data=message.encode(), kind=lk.DataPacket.Kind.RELIABLE, topic=CONTROL_TOPIC)
        )

    async def delete_room(self, room: str) -> None:
        try:
            await self.client.room.delete_room(lk.DeleteRoomRequest(room=room))
        except lk.TwirpError as e:
            if e.code != lk.TwirpErrorCode.NOT_FOUND:
                raise

    # ---- inbound numbers: the trunk that accepts a number's calls and the rule that dispatches them ----

    async def create_inbound_trunk(
        self,
        *,
        number: str,
        name: str,
        allowed_addresses: tuple[str, ...] = (),
        auth_username: str = "",
        auth_password: str = "",
        ring_timeout: float = 0,
        max_call_seconds: float = 0,
    ) -> str:
        trunk = await self.client.sip.create_inbound_trunk(
            lk.CreateSIPInboundTrunkRequest(
                trunk=lk.SIPInboundTrunkInfo(
                    name=name,
                    numbers=[number],
                    allowed_addresses=list(allowed_addresses),
                    auth_username=auth_username,
                    auth_password=auth_password,
                    ringing_timeout=Duration(seconds=int(ring_timeout)),
                    max_call_duration=Duration(seconds=int(max_call_seconds)),
                )
            )
        )
        return trunk.sip_trunk_id

    async def delete_trunk(self, trunk_id: str) -> None:
        try:
            await self.client.sip.delete_trunk(lk.DeleteSIPTrunkRequest(sip_trunk_id=trunk_id))
        except lk.TwirpError as e:
            if e.code != lk.TwirpErrorCode.NOT_FOUND:
                raise

    def _dispatch_rule(self, *, trunk_id: str, name: str, metadata: DispatchMeta) -> lk.SIPDispatchRuleInfo:
        # One room per call, the agent dispatched into it with the number's assignment as the job's metadata.
        return lk.SIPDispatchRuleInfo(
            name=name,
            trunk_ids=[trunk_id],
            rule=lk.SIPDispatchRule(
                dispatch_rule_individual=lk.SIPDispatchRuleIndividual(room_prefix=INBOUND_ROOM_PREFIX)
            ),
            room_config=lk.RoomConfiguration(
                agents=[
                    lk.RoomAgentDispatch(
                        agent_name=self.agent_name, metadata=self.signer.seal(metadata, server_key=self.api_key)
                    )
                ]
            ),
        )

    async def create_dispatch_rule(self, *, trunk_id: str, name: str, metadata: DispatchMeta) -> str:
        rule = await self.client.sip.create_dispatch_rule(
            lk.CreateSIPDispatchRuleRequest(
                dispatch_rule=self._dispatch_rule(trunk_id=trunk_id, name=name, metadata=metadata)
            )
        )
        return rule.sip_dispatch_rule_id

    async def replace_dispatch_rule(self, rule_id: str, *, trunk_id: str, name: str, metadata: DispatchMeta) -> str:
        """The rule now dispatches per `metadata`, in place (never two rules for one trunk); one is created if the
        old one is gone. Returns the rule's id."""
        try:
            await self.client.sip.update_dispatch_rule(
                rule_id, self._dispatch_rule(trunk_id=trunk_id, name=name, metadata=metadata)
            )
        except lk.TwirpError as e:
            if e.code != lk.TwirpErrorCode.NOT_FOUND:
                raise
            return await self.create_dispatch_rule(trunk_id=trunk_id, name=name, metadata=metadata)
        return rule_id

    async def delete_dispatch_rule(self, rule_id: str) -> None:
        try:
            await self.client.sip.delete_dispatch_rule(lk.DeleteSIPDispatchRuleRequest(sip_dispatch_rule_id=rule_id))
        except lk.TwirpError as e:
            if e.code != lk.TwirpErrorCode.NOT_FOUND:
                raise

    def verify_webhook(self, body: str, authorization: str) -> lk.WebhookEvent:
        token = authorization.strip()
        if token.lower().startswith("bearer "):
            token = token[7:].strip()
        return self.receiver.receive(body, token)


UPSTREAM_FAILED = "the client's LiveKit server could not be reached or refused the request"


class UpstreamFailed(Exception):
    """A tenant's own LiveKit server failed a request. Its message is the same whatever happened (refused address,
    closed port, unknown name, timeout, an error answer), so that it tells a tenant nothing about the network the
    product sits in; what happened is logged."""

    def __init__(self) -> None:
        super().__init__(UPSTREAM_FAILED)


P = ParamSpec("P")
R = TypeVar("R")


def _uniform(method: Callable[P, Awaitable[R]]) -> Callable[P, Awaitable[R]]:
    @functools.wraps(method)
    async def wrapped(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return await method(*args, **kwargs)
        except Exception as e:
            gateway = args[0]
            cause = getattr(e, "os_error", None) or e  # aiohttp's connector errors wrap the resolver's
            log.warning(
                "client LiveKit server %s: %s failed: %s: %s",
                getattr(gateway, "url", "?"),
                method.__name__,
                type(cause).__name__,
                cause,
            )
            raise UpstreamFailed() from None

    return wrapped


class ClientGateway(LiveKitGateway):
    """A client's own LiveKit server (Autonomite's clients), a URL a tenant set: reached only through the outbound
    address policy (its name resolved and checked at each connection, an address literal checked before each
    request, no region failover to other hosts), and every failure is `UpstreamFailed`."""

    def __init__(
        self, url: str, api_key: str, api_secret: str, *, agent_name: str, signer: DispatchSigner, policy: NetPolicy
    ) -> None:
        super().__init__(url, api_key, api_secret, agent_name=agent_name, signer=signer)
        self.policy = policy
        self._session: aiohttp.ClientSession | None = None

    @property
    def client(self) -> lk.LiveKitAPI:
        if self._api is None:
            self._session = self.policy.session()
            self._api = lk.LiveKitAPI(
                http_url(self.url), self.api_key, self.api_secret, session=self._session, failover=False
            )
        return self._api

    async def _checked(self) -> None:
        await self.policy.check_url(http_url(self.url), resolve=False)

    async def aclose(self) -> None:
        await super().aclose()
        if self._session is not None:
            await self._session.close()
            self._session = None


def _through_policy(name: str) -> None:
    base = getattr(LiveKitGateway, name)

    async def checked(self: ClientGateway, *args: Any, **kwargs: Any) -> Any:
        await self._checked()
        return await base(self, *args, **kwargs)

    checked.__name__ = name
    setattr(ClientGateway, name, _uniform(checked))


# What the product asks of a client's server; the SIP calls are the product's server's only.
for _name in ("dispatch", "delete_dispatch", "caller_present", "remove_participant", "send_control", "delete_room"):
    _through_policy(_name)


class Gateways:
    """The product's LiveKit gateway and one per client with its own LiveKit server, one per (url, key, secret):
    at most `MAX_CLIENT_GATEWAYS`, the least recently used closed first, and one whose client's settings changed
    closed at once (each holds an HTTP session and its sockets)."""

    MAX_CLIENT_GATEWAYS = 64

    def __init__(self, default: LiveKitGateway, client_livekit: Any, policy: NetPolicy | None = None) -> None:
        # client_livekit(owner_id, client_id) -> awaitable {server_url, api_key, api_secret} | None
        self.default = default
        self.policy = policy or NetPolicy()
        self._client_livekit = client_livekit
        self._by_ident: OrderedDict[tuple[str, str, str], ClientGateway] = OrderedDict()
        self._ident_of: dict[tuple[str, str], tuple[str, str, str]] = {}
        self._lookups = itertools.count()  # the order lookups began in
        self._applied: dict[tuple[str, str], int] = {}  # per client, the latest lookup whose settings were applied
        self._closing: set[asyncio.Task[None]] = set()

    async def for_client(self, owner_id: str, client_id: str | None) -> LiveKitGateway:
        if client_id is None:
            return self.default
        key = (owner_id, client_id)
        lookup = next(self._lookups)
        settings = await self._client_livekit(owner_id, client_id)
        if self._applied.get(key, -1) > lookup:
            # A lookup begun after this one has already answered, with settings at least as new as these: use
            # its gateway (applying these would close the gateway a newer request is using).
            ident = self._ident_of.get(key)
        else:
            self._applied[key] = lookup
            ident = None if settings is None else (settings["server_url"], settings["api_key"], settings["api_secret"])
            old = self._ident_of.pop(key, None)
            if ident is not None:
                self._ident_of[key] = ident
            if old is not None and old != ident and old not in self._ident_of.values():
                self._close(self._by_ident.pop(old, None))  # nobody uses the old settings any more
        if ident is None:
            return self.default
        gateway = self._by_ident.get(ident)
        if gateway is None:
            gateway = ClientGateway(
                *ident, agent_name=self.default.agent_name, signer=self.default.signer, policy=self.policy
            )
            self._by_ident[ident] = gateway
            while len(self._by_ident) > self.MAX_CLIENT_GATEWAYS:
                _, evicted = self._by_ident.popitem(last=False)
                self._close(evicted)
        self._by_ident.move_to_end(ident)
        return gateway

    def _close(self, gateway: ClientGateway | None) -> None:
        """Closed in a task of this object (a request in flight on it may still finish), awaited by `aclose`."""
        if gateway is None:
            return
        task = asyncio.get_running_loop().create_task(gateway.aclose(), name="livekit-gateway-close")
        self._closing.add(task)
        task.add_done_callback(self._closing.discard)

    @property
    def open_client_gateways(self) -> int:
        return len(self._by_ident)

    async def for_session(self, row: dict[str, Any]) -> LiveKitGateway:
        return await self.for_client(row["owner_id"], row.get("client_id"))

    async def aclose(self) -> None:
        for gateway in self._by_ident.values():
            await gateway.aclose()
        self._by_ident.clear()
        self._ident_of.clear()
        self._applied.clear()
        if self._closing:
            await asyncio.gather(*self._closing, return_exceptions=True)
