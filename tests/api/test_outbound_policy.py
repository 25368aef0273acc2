"""The outbound address policy (core/netpolicy.py) against a hostile tenant, every name resolved by a DNS server the
test controls (tests/harness/dns.py): callback URLs and clients' LiveKit servers on non-public addresses are refused
when set and when used, a name that rebinds to loopback between the check and the delivery reaches nothing, every
failure of a tenant's LiveKit server looks the same, and changing a client's secret 300 times leaks no sockets."""

from __future__ import annotations

import asyncio
import json
import os
import socket

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from api.keys import GATEWAYS
from core.netpolicy import NetPolicy, reachable
from core.secrets import SecretBox
from core.store import clients as clients_repo
from tests.api.seed import AGENT_WIRE, tenant_of
from tests.api.test_calls import PHONE, Receiver, _agent, _until
from tests.api.test_clients import CLIENT_KEY, CLIENT_SECRET, _body
from tests.api.twirp_stub import start_twirp_stub
from tests.conftest import assert_error, table_snapshot

REFUSED = [
    "127.0.0.1",
    "10.1.2.3",
    "172.16.0.1",
    "192.168.1.1",
    "169.254.169.254",
    "100.64.0.1",
    "100.100.100.200",
    "0.0.0.0",
    "255.255.255.255",
    "224.0.0.1",
    "198.18.0.1",
    "192.0.2.1",
    "::1",
    "::",
    "fe80::1",
    "fc00::1",
    "ff02::1",
    "::ffff:127.0.0.1",
    "::ffff:169.254.169.254",
    "::ffff:100.100.100.200",
    "::127.0.0.1",
    "::10.0.0.1",
    "64:ff9b::7f00:1",
    "64:ff9b::a9fe:a9fe",
    "64:ff9b:1::6464:64c8",
    "2001:db8::1",
    "not-an-address",
]
ALLOWED = ["93.184.215.14", "1.1.1.1", "2606:4700:4700::1111", "::ffff:1.1.1.1", "64:ff9b::101:101"]


@pytest.mark.parametrize("address", REFUSED)
def test_every_non_public_address_is_refused_in_each_of_its_forms(address):
    assert not reachable(address)


@pytest.mark.parametrize("address", ALLOWED)
def test_public_addresses_are_reachable_in_each_of_their_forms(address):
    assert reachable(address)


async def test_a_name_is_refused_when_any_of_its_addresses_is_and_listed_hosts_pass(dns_server):
    dns_server.records.update(
        {
            "mixed.test": ["93.184.215.14", "10.0.0.1"],
            "ok.test": ["93.184.215.14"],
            "v6.test": ["::ffff:100.100.100.200"],
        }
    )
    policy = NetPolicy.of(["intranet.test"], dns_server.lookup)
    dns_server.records["intranet.test"] = ["10.9.9.9"]
    assert await policy.resolve("ok.test", 443) == ["93.184.215.14"]
    assert await policy.resolve("intranet.test", 443) == ["10.9.9.9"]
    for host, why in (
        ("mixed.test", "10.0.0.1"),
        ("v6.test", "::ffff:100.100.100.200"),
        ("missing.test", "does not resolve"),
    ):
        with pytest.raises(OSError, match=why):
            await policy.resolve(host, 443)


# ---- callbacks ----


@pytest.fixture
def settings(settings):
    """127.0.0.1 listed as an operator would list a host of its own: a listed host passes by its name only, so a
    name resolving to 127.0.0.1 or another spelling of it is still refused."""
    return settings.with_(
        sip_outbound_trunk_id="ST_test",
        callback_backoff_seconds=0.05,
        callback_max_attempts=2,
        outbound_http_allowed_hosts=("127.0.0.1",),
    )


async def test_callback_urls_on_non_public_addresses_are_refused_and_nothing_is_placed(
    client, auth, settings, dns_server, twirp_stub
):
    _, calls = twirp_stub
    dns_server.records.update(
        {"metadata.test": ["100.100.100.200"], "cgnat.test": ["100.64.12.1"], "mapped.test": ["::ffff:127.0.0.1"]}
    )
    h = auth("alice")
    agent_id = await _agent(client, h)
    before = table_snapshot(settings)
    for url in (
        "http://100.100.100.200/latest/meta-data",
        "http://100.64.0.1/hook",
        "http://metadata.test/x",
        "https://cgnat.test/hook",
        "http://mapped.test/hook",
        "http://[::ffff:127.0.0.1]:9/x",
        "http://[64:ff9b::7f00:1]/x",
        "http://0.0.0.0:8080/",
        "http://unknown.test/hook",
    ):
        body = await assert_error(
            await client.post(
                "/api/calls/outbound",
                headers=h,
                json={"agent_id": agent_id, "phone_number": PHONE, "callback_url": url},
            ),
            400,
        )
        assert body["detail"].startswith("body callback_url: "), body
    assert table_snapshot(settings) == before and calls == []


async def _placed_with_callback(client, h: dict[str, str], callback_url: str) -> str:
    agent_id = await _agent(client, h)
    resp = await client.post(
        "/api/calls/outbound",
        headers=h,
        json={"agent_id": agent_id, "phone_number": PHONE, "callback_url": callback_url},
    )
    placed = await resp.json()
    assert resp.status == 201, placed
    return str(placed["call_id"])


async def _attempts(client, h: dict[str, str], call_id: str, count: int, what: str) -> list[dict]:
    async def listed():
        rows = await (await client.get(f"/api/calls/{call_id}/callbacks", headers=h)).json()
        return rows if len(rows) >= count else None

    return await _until(what, listed)


async def _ip(*args: str) -> None:
    proc = await asyncio.create_subprocess_exec("ip", *args)
    assert await proc.wait() == 0, f"ip {' '.join(args)} failed"


@pytest.mark.skipif(
    not os.environ.get("VOXARENA_TEST_NETNS"),
    reason="needs the test network namespace (.ci/netns-run): a public address is made local there",
)
async def test_a_callback_name_rebound_to_loopback_after_its_check_reaches_nothing_on_loopback(
    client, auth, store, dns_server
):
    """The name resolves to a public address when the call is placed and at the delivery's first resolution, then
    to loopback. The delivery resolves once and connects to what it checked: the public address (made local to the
    test's namespace, with a receiver on it) gets the callbacks; loopback gets none."""
    public = "1.2.3.4"
    await _ip("addr", "add", f"{public}/32", "dev", "lo")
    on_loopback = Receiver()
    loopback_url = await on_loopback.start()
    port = int(loopback_url.rsplit(":", 1)[1].split("/")[0])
    seen_public: list[bytes] = []

    async def hook(request: web.Request) -> web.Response:
        seen_public.append(await request.read())
        return web.Response(status=204)

    app = web.Application()
    app.router.add_post("/hook", hook)
    on_public = TestServer(app, host=public, port=port)
    await on_public.start_server()
    try:
        dns_server.plan("rebind.test", [public], [public], ["127.0.0.1"])
        h = auth("alice")
        call_id = await _placed_with_callback(client, h, f"http://rebind.test:{port}/hook")
        rows = await _attempts(client, h, call_id, 1, "the RINGING callback's first attempt")
        assert on_loopback.requests == [], "a rebound name reached loopback"
        assert len(seen_public) == 1 and json.loads(seen_public[0])["call_status"] == "RINGING"
        assert rows[0]["delivered"] is True
    finally:
        await on_public.close()
        await on_loopback.server.close()
        await _ip("addr", "del", f"{public}/32", "dev", "lo")


async def test_a_callback_whose_name_now_points_at_loopback_fails_and_says_why(client, auth, dns_server):
    receiver = Receiver()
    url = await receiver.start()
    port = int(url.rsplit(":", 1)[1].split("/")[0])
    try:
        dns_server.plan("moved.test", ["93.184.215.14"], ["127.0.0.1"])
        h = auth("alice")
        call_id = await _placed_with_callback(client, h, f"http://moved.test:{port}/hook")
        rows = await _attempts(client, h, call_id, 2, "both attempts of the RINGING callback")
        assert [r["delivered"] for r in rows] == [False, False]
        assert all("refused" in r["error"] and "127.0.0.1" in r["error"] for r in rows), rows
        assert receiver.requests == []
    finally:
        await receiver.server.close()


# ---- a client's own LiveKit server ----


async def test_a_clients_livekit_url_on_a_non_public_address_is_refused_when_set(client, auth, settings, dns_server):
    dns_server.records["lk-internal.test"] = ["10.20.30.40"]
    h = auth("alice")
    before = table_snapshot(settings)
    for url in (
        "http://169.254.169.254",
        "ws://10.1.2.3:7880",
        "wss://100.64.0.1",
        "wss://100.100.100.200",
        "wss://lk-internal.test",
        "ws://[::ffff:127.0.0.1]:7880",
        "wss://[fd00::1]",
        "wss://unknown.test",
    ):
        body = await assert_error(await client.post("/api/v1/clients", json=_body(url), headers=h), 400)
        assert body["detail"].startswith("body settings.livekit.server_url: "), body
    assert table_snapshot(settings) == before
    dns_server.records["lk.customer.test"] = ["93.184.215.14"]
    assert (await client.post("/api/v1/clients", json=_body("wss://lk.customer.test"), headers=h)).status == 201
    made = await (
        await client.post("/api/v1/clients", json=_body("wss://lk.customer.test", id="second"), headers=h)
    ).json()
    put = await client.put(
        "/api/v1/clients/second",
        headers=h,
        json={"settings": {"livekit": {**made["settings"]["livekit"], "server_url": "ws://192.168.0.1:7880"}}},
    )
    await assert_error(put, 400)


def _stored_client(store, settings, client_id: str, url: str, secret: str = CLIENT_SECRET) -> None:
    """A client as a database from before the policy may hold it (nothing checked its URL)."""
    box = SecretBox.from_settings(settings.secret_key, settings.data_dir)
    store.write_sync(
        lambda db: clients_repo.create(
            db,
            tenant_of("alice"),
            {
                "id": client_id,
                "name": client_id,
                "settings": {"livekit": {"server_url": url, "api_key": CLIENT_KEY}},
                "secrets": box.seal(json.dumps({"livekit": {"api_secret": secret}})),
            },
        )
    )


async def test_every_failure_of_a_tenants_livekit_server_answers_the_same_502(
    client, auth, settings, store, dns_server, caplog
):
    """No port-scan oracle: a refused address, an unknown name, a closed port and a server that answers with an
    error all give one status and one body; what happened is in the log only."""
    answered: list[str] = []

    async def refuse(request: web.Request) -> web.Response:
        answered.append(request.path)
        return web.Response(status=404, text="no such service")

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", refuse)
    erring = TestServer(app, host="127.0.0.1")
    await erring.start_server()
    try:
        targets = {
            "refused": "http://169.254.169.254",
            "nxdomain": "wss://nowhere.test",
            "closed": f"ws://127.0.0.1:{_closed_port()}",
            "erring": str(erring.make_url("")).rstrip("/"),
        }
        h = auth("alice")
        bodies = {}
        for name, url in targets.items():
            _stored_client(store, settings, name, url)
            agent = await (await client.post("/api/agents", json={**AGENT_WIRE, "clientId": name}, headers=h)).json()
            resp = await client.post("/api/livekit/token", json={"agentId": agent["id"]}, headers=h)
            bodies[name] = (resp.status, await resp.json())
        assert {status for status, _ in bodies.values()} == {502}, bodies
        assert len({json.dumps(body, sort_keys=True) for _, body in bodies.values()}) == 1, bodies
        assert answered, "the erring server was reached (it is on a listed host)"
        for url in targets.values():  # where it failed: in the operator's log, never in the tenant's answer
            assert url not in json.dumps(bodies) and url in caplog.text, url
    finally:
        await erring.close()


async def test_changing_a_clients_secret_300_times_leaks_no_sockets(client, auth):
    """Each change followed by a token request through the client's server: the gateway of the old settings is
    closed, so the process's descriptors stay flat (before: 50 -> 692, until `Too many open files`)."""
    stub, stub_calls = await start_twirp_stub({})
    try:
        await _secret_changes(client, auth, str(stub.make_url("")).rstrip("/").replace("http://", "ws://"), stub_calls)
    finally:
        await stub.close()


async def _secret_changes(client, auth, url: str, stub_calls: list) -> None:
    h = auth("alice")
    assert (await client.post("/api/v1/clients", json=_body(url), headers=h)).status == 201
    agent = await (await client.post("/api/agents", json={**AGENT_WIRE, "clientId": "new-client"}, headers=h)).json()

    async def change_and_call(i: int) -> None:
        put = await client.put(
            "/api/v1/clients/new-client",
            headers=h,
            json={
                "settings": {
                    "livekit": {"server_url": url, "api_key": CLIENT_KEY, "api_secret": f"{CLIENT_SECRET}-{i:04d}"}
                }
            },
        )
        assert put.status == 200, await put.text()
        resp = await client.post("/api/livekit/token", json={"agentId": agent["id"]}, headers=h)
        assert resp.status == 200, await resp.text()

    for i in range(10):  # warm: the first gateways, the stub's and the client's keep-alive sockets
        await change_and_call(i)
    await asyncio.sleep(0)
    before = len(os.listdir("/proc/self/fd"))
    for i in range(10, 310):
        await change_and_call(i)
    gateways = client.app[GATEWAYS]
    await _until("the replaced gateways closed", _closed(gateways))
    after = len(os.listdir("/proc/self/fd"))
    assert after - before < 20, (before, after)
    assert gateways.open_client_gateways == 1
    assert sum(1 for name, _ in stub_calls if name == "CreateDispatch") == 310


def _closed(gateways):
    async def check():
        return not getattr(gateways, "_closing", None) or None

    return check


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# Every URL a request body can carry, and what the product does with it. A new URL field fails this test until it
# is listed here: either checked by the policy when set and when used, or never reached by the product.
CHECKED = {"callback_url", "settings.livekit.server_url", "tools.url", "webhookUrl", "contextWebhookUrl"}
NEVER_REACHED = {"settings.supabase.url"}  # 002's clients: stored for the tenant, never fetched by voxarena


def _models_in(annotation) -> list[type]:
    """The pydantic models an annotation holds, through Optional, unions, lists and Annotated (an agent's tools)."""
    import typing

    if isinstance(annotation, type) and hasattr(annotation, "model_fields"):
        return [annotation]
    return [m for arg in typing.get_args(annotation) for m in _models_in(arg)]


def _url_fields(model, prefix: str = "") -> set[str]:
    found: set[str] = set()
    for name, info in model.model_fields.items():
        path = f"{prefix}{name}"
        for inner in _models_in(info.annotation):
            found |= _url_fields(inner, path + ".")
        if "url" in name.lower():
            found.add(path)
    return found


def test_every_url_a_tenant_can_set_is_under_the_policy_or_never_reached():
    from api.app import all_routes

    fields = set().union(*(_url_fields(r.body) for r in all_routes() if r.body is not None))
    assert fields == CHECKED | NEVER_REACHED, sorted(fields)


async def test_a_redirect_to_a_non_public_address_is_not_followed(client, auth, settings, store):
    """A client's server on a listed host answers every request with a redirect to 127.0.0.2 (an address literal,
    which aiohttp never hands to a resolver): the product does not follow it, and answers the one 502."""
    behind: list[str] = []

    async def internal(request: web.Request) -> web.Response:
        behind.append(request.path)
        return web.Response(status=200)

    inner = web.Application()
    inner.router.add_route("*", "/{tail:.*}", internal)
    target = TestServer(inner, host="127.0.0.2")
    await target.start_server()

    async def redirect(request: web.Request) -> web.Response:
        raise web.HTTPTemporaryRedirect(f"http://127.0.0.2:{target.port}{request.path}")

    outer = web.Application()
    outer.router.add_route("*", "/{tail:.*}", redirect)
    redirecting = TestServer(outer, host="127.0.0.1")
    await redirecting.start_server()
    try:
        _stored_client(store, settings, "redirecting", str(redirecting.make_url("")).rstrip("/"))
        h = auth("alice")
        agent = await (
            await client.post("/api/agents", json={**AGENT_WIRE, "clientId": "redirecting"}, headers=h)
        ).json()
        resp = await client.post("/api/livekit/token", json={"agentId": agent["id"]}, headers=h)
        body = await assert_error(resp, 502)
        assert body["detail"] == "the client's LiveKit server could not be reached or refused the request"
        assert behind == [], "the redirect to a non-public address was followed"
    finally:
        await redirecting.close()
        await target.close()
