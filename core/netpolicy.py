"""The one outbound address policy, for every URL a tenant can set: callback URLs, a client's own LiveKit server,
the agents' HTTP tools and webhooks, and the SIP hosts a warm transfer dials (`VOXARENA_SIP_TRANSFER_ALLOWED_HOSTS`
lists the exceptions there).

Only global addresses may be reached (`ipaddress`' ``is_global``, multicast excluded), after unwrapping the IPv6
forms that carry an IPv4 address (IPv4-mapped ``::ffff:a.b.c.d``, IPv4-compatible ``::a.b.c.d``, NAT64
``64:ff9b::/96`` and ``64:ff9b:1::/48``): so loopback, private, link-local, CGNAT (``100.64.0.0/10``, where
``100.100.100.200`` is a cloud metadata address), ``0.0.0.0`` and the reserved ranges are refused. Hosts listed in
``VOXARENA_OUTBOUND_HTTP_ALLOWED_HOSTS`` pass as they are.

A URL is checked when it is saved (`check_url`) and again on every use: an HTTP session made by `pinned_session`
resolves each name once per connection, refuses the whole answer if any address in it is refused, and connects to
the addresses it checked, so a name that points somewhere else by the time it is used (DNS rebinding) reaches
nothing. An address literal in a URL never goes through a resolver: `check_url(..., resolve=False)` checks it."""

from __future__ import annotations

import asyncio
import dataclasses
import ipaddress
import socket
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from urllib.parse import urlsplit

import aiohttp
from aiohttp import ClientHandlerType, ClientRequest, ClientResponse
from aiohttp.abc import AbstractResolver, ResolveResult

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

# (host, port) -> the addresses the name resolves to (strings, IPv4 or IPv6)
Lookup = Callable[[str, int], Awaitable[list[str]]]

_NAT64 = (ipaddress.IPv6Network("64:ff9b::/96"), ipaddress.IPv6Network("64:ff9b:1::/48"))


class AddressRefused(OSError):
    """A URL that the policy does not let the product reach; the message says why (for the tenant who set it)."""


def embedded_ipv4(ip: IPAddress) -> IPAddress:
    """The IPv4 address an IPv6 address carries (mapped, compatible, NAT64), else the address itself."""
    if isinstance(ip, ipaddress.IPv4Address):
        return ip
    if ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    if any(ip in net for net in _NAT64):
        return ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    if int(ip) >> 32 == 0 and int(ip) > 1:  # ::a.b.c.d (deprecated IPv4-compatible); :: and ::1 are not
        return ipaddress.IPv4Address(int(ip))
    return ip


def reachable(address: str) -> bool:
    """The address may be reached from the product on a tenant's behalf."""
    try:
        ip = embedded_ipv4(ipaddress.ip_address(address.split("%", 1)[0]))
    except ValueError:
        return False
    return ip.is_global and not ip.is_multicast


async def system_lookup(host: str, port: int) -> list[str]:
    """The operating system's resolver (getaddrinfo, in its thread pool)."""
    infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return [str(info[4][0]) for info in infos]


def _literal(host: str) -> IPAddress | None:
    try:
        return ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return None


@dataclass(frozen=True)
class NetPolicy:
    allowed_hosts: frozenset[str] = frozenset()
    lookup: Lookup = field(default=system_lookup, compare=False)
    # the setting that lists `allowed_hosts`, named to the tenant when a host is refused
    setting: str = "VOXARENA_OUTBOUND_HTTP_ALLOWED_HOSTS"

    @classmethod
    def of(cls, allowed_hosts: Iterable[str], lookup: Lookup | None = None, *, setting: str | None = None) -> NetPolicy:
        hosts = frozenset(h.strip().lower() for h in allowed_hosts if h.strip())
        policy = cls(hosts) if lookup is None else cls(hosts, lookup)
        return dataclasses.replace(policy, setting=setting) if setting else policy

    def allowed(self, host: str) -> bool:
        return host.lower().strip("[]") in self.allowed_hosts

    async def resolve(self, host: str, port: int) -> list[str]:
        """The addresses to connect to for `host`, every one of them checked; raises `AddressRefused`."""
        literal = _literal(host)
        if self.allowed(host):
            return [str(literal)] if literal is not None else await self.lookup(host, port)
        if literal is not None:
            addresses = [str(literal)]
        else:
            try:
                host.encode("idna")  # what a resolver would be asked; a name IDNA refuses resolves nowhere
            except UnicodeError:
                raise AddressRefused(f"host {host!r} is not a valid host name") from None
            try:
                addresses = await self.lookup(host, port)
            except (OSError, UnicodeError) as e:
                raise AddressRefused(f"host {host!r} does not resolve ({getattr(e, 'strerror', None) or e})") from None
        if not addresses:
            raise AddressRefused(f"host {host!r} does not resolve")
        refused = sorted({a for a in addresses if not reachable(a)})
        if refused:
            raise AddressRefused(
                f"host {host!r} is a private, loopback, link-local or otherwise non-public address "
                f"({', '.join(refused)}); list it in {self.setting} to allow it"
            )
        return addresses

    async def check_url(self, url: str, *, schemes: tuple[str, ...] = ("http", "https"), resolve: bool = True) -> None:
        """The URL's scheme, its host, and (with `resolve`) where its host resolves; raises `AddressRefused`.
        Without `resolve` only an address literal is checked: a name is left to the pinned session."""
        try:
            parts = urlsplit(url)
            port = parts.port
        except ValueError as e:
            raise AddressRefused(f"not a valid URL ({e})") from None
        if parts.scheme not in schemes or not parts.hostname:
            raise AddressRefused(f"must be a {'/'.join(schemes)} URL with a host")
        default_port = 443 if parts.scheme in ("https", "wss") else 80
        if resolve or _literal(parts.hostname) is not None:
            await self.resolve(parts.hostname, port or default_port)

    def session(self) -> aiohttp.ClientSession:
        """An HTTP session that reaches only what the policy allows, on every request and every redirect it
        follows: a name is resolved once per connection and the connection goes to the addresses checked (the
        resolver below); an address literal, which aiohttp never hands to a resolver, is checked by a middleware."""
        connector = aiohttp.TCPConnector(resolver=PinnedResolver(self), use_dns_cache=False)
        return aiohttp.ClientSession(connector=connector, middlewares=(self._literals,))

    async def _literals(self, request: ClientRequest, handler: ClientHandlerType) -> ClientResponse:
        host = request.url.host
        if host is not None and _literal(host) is not None:
            await self.resolve(host, request.url.port or 0)  # a literal resolves to itself, checked
        return await handler(request)


class PinnedResolver(AbstractResolver):
    """aiohttp's resolver for `NetPolicy.session`: the connection goes to the checked addresses, nothing else."""

    def __init__(self, policy: NetPolicy) -> None:
        self.policy = policy

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        addresses = await self.policy.resolve(host, port)
        return [
            ResolveResult(
                hostname=host,
                host=a,
                port=port,
                family=socket.AF_INET6 if ":" in a else socket.AF_INET,
                proto=0,
                flags=socket.AI_NUMERICHOST,
            )
            for a in addresses
        ]

    async def close(self) -> None:
        return None
