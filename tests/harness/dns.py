"""A DNS server the test controls, on 127.0.0.1 (UDP), answering A and AAAA queries from a table the test changes
while the product runs (e.g. a public address at the check, loopback at the delivery: DNS rebinding), and the lookup
the product is built with in tests (`NetPolicy`'s lookup), which asks that server and nothing else."""

from __future__ import annotations

import asyncio
import ipaddress
from collections import Counter

import dns.asyncresolver
import dns.exception
import dns.flags
import dns.message
import dns.rcode
import dns.rdataclass
import dns.rdatatype
import dns.resolver
import dns.rrset


class DnsServer(asyncio.DatagramProtocol):
    def __init__(self) -> None:
        self.records: dict[str, list[str]] = {}
        self.plans: dict[str, list[list[str]]] = {}
        self.queries: Counter[str] = Counter()
        self.transport: asyncio.DatagramTransport | None = None
        self.port = 0

    def plan(self, name: str, *answers: list[str]) -> None:
        """`name` answers each resolution (its A query) with the next of `answers`, the last one from then on."""
        self.plans[name] = list(answers)

    async def start(self) -> DnsServer:
        loop = asyncio.get_running_loop()
        transport, _ = await loop.create_datagram_endpoint(lambda: self, local_addr=("127.0.0.1", 0))
        self.transport = transport
        self.port = transport.get_extra_info("sockname")[1]
        return self

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:  # type: ignore[override]
        query = dns.message.from_wire(data)
        reply = dns.message.make_response(query)
        reply.flags |= dns.flags.RA
        question = query.question[0]
        name = question.name.to_text(omit_final_dot=True).lower()
        self.queries[name] += 1
        plan = self.plans.get(name)
        if plan and question.rdtype == dns.rdatatype.A:
            self.records[name] = plan.pop(0) if len(plan) > 1 else plan[0]
        if name not in self.records:
            reply.set_rcode(dns.rcode.NXDOMAIN)
        else:
            want = 4 if question.rdtype == dns.rdatatype.A else 6
            addresses = [a for a in self.records[name] if ipaddress.ip_address(a).version == want]
            if addresses:
                reply.answer.append(
                    dns.rrset.from_text(question.name, 0, dns.rdataclass.IN, question.rdtype, *addresses)
                )
        assert self.transport is not None
        self.transport.sendto(reply.to_wire(), addr)

    async def lookup(self, host: str, port: int) -> list[str]:
        """What the product's NetPolicy calls instead of getaddrinfo: A and AAAA from this server only."""
        resolver = dns.asyncresolver.Resolver(configure=False)
        resolver.nameservers = ["127.0.0.1"]
        resolver.port = self.port
        resolver.lifetime = 2.0
        addresses: list[str] = []
        for rdtype in ("A", "AAAA"):
            try:
                answer = await resolver.resolve(host, rdtype, search=False)
            except (dns.resolver.NXDOMAIN, dns.resolver.NoAnswer):
                continue
            except dns.exception.DNSException as e:  # a name the resolver cannot ask for, as getaddrinfo would say
                raise OSError(f"{host!r}: {e}") from None
            addresses += [r.to_text() for r in answer]
        if not addresses:
            raise OSError(f"{host} does not resolve")
        return addresses
