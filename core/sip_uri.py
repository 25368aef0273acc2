"""SIP URIs a tenant names (a transfer's target) and the address policy for the hosts the product's own SIP bridge
dials: a warm transfer calls `sip:<user>@<host>` itself, so the host must be one the outbound address policy
(core/netpolicy.py) lets the product reach, or one the operator listed in `VOXARENA_SIP_TRANSFER_ALLOWED_HOSTS`."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from core.netpolicy import NetPolicy

ALLOWED_HOSTS_SETTING = "VOXARENA_SIP_TRANSFER_ALLOWED_HOSTS"


@dataclass(frozen=True)
class SipUri:
    """`sip:` / `sips:` URI: its user, its host (a name or an address, IPv6 without brackets), its port if given."""

    user: str
    host: str
    port: int | None = None
    tls: bool = False

    @classmethod
    def parse(cls, uri: str) -> SipUri:
        """ValueError saying why `uri` is not a sip:/sips: URI with a user and a host."""
        scheme, _, rest = uri.partition(":")
        user, _, hostport = rest.partition("@")
        hostport = hostport.split(";", 1)[0].split("?", 1)[0]
        if scheme not in ("sip", "sips") or not user or not hostport:
            raise ValueError(f"{uri} is not a tel: or sip: URI with a user and a host")
        host, port = hostport, ""
        if hostport.startswith("["):
            host, _, tail = hostport[1:].partition("]")
            port = tail.removeprefix(":")
        elif hostport.count(":") == 1:
            host, port = hostport.split(":")
        if not host or (port and not (port.isdigit() and 0 < int(port) < 65536)):
            raise ValueError(f"{uri} has no valid host and port")
        return cls(user=user, host=host, port=int(port) if port else None, tls=scheme == "sips")

    @property
    def default_port(self) -> int:
        return self.port or (5061 if self.tls else 5060)

    def hostport(self, host: str | None = None) -> str:
        """`host[:port]` (the URI's own host, or `host` given), IPv6 in brackets."""
        h = host if host is not None else self.host
        h = f"[{h}]" if ":" in h else h
        return f"{h}:{self.port}" if self.port else h


def transfer_uri(target: str) -> str:
    """A transfer's target as LiveKit takes it (the REFER's Refer-To, a warm transfer's dial): a tel: URI for an
    E.164 number, a SIP URI as given."""
    return f"tel:{target}" if target.startswith("+") else target


def transfer_policy(settings: Any, **kw: Any) -> NetPolicy:
    """The policy for the SIP hosts a warm transfer dials."""
    return NetPolicy.of(settings.sip_transfer_allowed_hosts, setting=ALLOWED_HOSTS_SETTING, **kw)


async def checked_address(policy: NetPolicy, uri: SipUri) -> str:
    """The address to dial `uri`'s host at, checked by `policy`; raises `AddressRefused` saying why not."""
    return (await policy.resolve(uri.host, uri.default_port))[0]
