"""An agent's post-call webhook (``webhookUrl``) as the API process delivers it: once a session's analysis is stored
(or skipped), one signed POST with the session, its transcript, tool calls, analysis and cost; a failed delivery
retried with backoff, every attempt listed in order; ten failures in a row show the webhook as failing, and a
delivery clears it. The URL is checked against the outbound policy when it is saved."""

from __future__ import annotations

import asyncio
import json
import time

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from core.store import sessions as sessions_repo
from core.store import tool_calls as tool_calls_repo
from tests.api.seed import AGENT_WIRE, ANALYSIS, seed_call
from tests.conftest import assert_error, db_rows, table_snapshot
from tests.harness.tool_server import verify


@pytest.fixture
def settings(settings):
    return settings.with_(
        outbound_http_allowed_hosts=("127.0.0.1",), callback_backoff_seconds=0.05, callback_max_attempts=3
    )


class Receiver:
    """The business's webhook endpoint: answers 500 to its first `fail_first` requests, then 200."""

    def __init__(self, fail_first: int = 0) -> None:
        self.fail_first = fail_first
        self.got: list[tuple[dict, dict, bytes]] = []
        self.server: TestServer | None = None

    async def start(self) -> str:
        async def hook(request: web.Request) -> web.Response:
            body = await request.read()
            self.got.append((json.loads(body), dict(request.headers), body))
            return web.Response(status=500 if len(self.got) <= self.fail_first else 200)

        app = web.Application()
        app.router.add_post("/calls", hook)
        self.server = TestServer(app, host="127.0.0.1")
        await self.server.start_server()
        return str(self.server.make_url("/calls"))


async def _until(what: str, check, timeout: float = 20.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if result := await check():
            return result
        await asyncio.sleep(0.05)
    raise AssertionError(f"{what} not reached in {timeout}s")


async def _agent(client, auth, url: str) -> str:
    resp = await client.post("/api/agents", json={**AGENT_WIRE, "webhookUrl": url}, headers=auth("alice"))
    assert resp.status == 201, await resp.text()
    return (await resp.json())["id"]


async def test_the_post_call_webhook_is_delivered_once_signed_after_a_first_failure(client, auth, store, settings):
    receiver = Receiver(fail_first=1)
    agent_id = await _agent(client, auth, await receiver.start())
    _, sid = seed_call(store, "alice", agent_id=agent_id, ended_at=None)
    store.write_sync(
        lambda db: tool_calls_repo.started(
            db, session_id=sid, call_key="c1", name="book_slot", kind="http", arguments={"time": "9"}
        )
    )
    store.write_sync(
        lambda db: tool_calls_repo.finished(
            db, session_id=sid, call_key="c1", status="ok", result='{"booked": true}', latency_ms=42
        )
    )
    store.write_sync(lambda db: sessions_repo.end(db, sid, reason="participant_left"))
    store.write_sync(lambda db: sessions_repo.store_analysis(db, sid, result=ANALYSIS, error=None, attempts=1))

    attempts = await _until(
        "a delivery",
        lambda: _delivered(client, auth, sid),
    )
    assert [(a["attempt"], a["responseStatus"], a["delivered"]) for a in attempts] == [(1, 500, False), (2, 200, True)]
    assert len(receiver.got) == 2
    body, headers, raw = receiver.got[-1]
    secret = (await (await client.get("/api/calls/callback-secret", headers=auth("alice"))).json())["secret"]
    assert verify(secret, headers["X-Voxarena-Signature"], raw)
    assert headers["X-Voxarena-Event-Id"] == body["event_id"] == f"session.ended:{sid}"
    assert body["event"] == "session.ended" and body["agent_id"] == agent_id
    session = body["session"]
    assert session["id"] == sid and session["status"] == "ended" and session["endReason"] == "participant_left"
    assert session["analysis"] == ANALYSIS and [t["speaker"] for t in session["transcript"]] == ["USER", "AGENT"]
    assert [(c["name"], c["status"], c["latencyMs"]) for c in session["toolCalls"]] == [("book_slot", "ok", 42)]
    assert body["cost"]["total_cost_nanos"] == 0 and body["cost"]["total_cost"] == 0

    # analysed again (a retry of the analysis): no second event, so nothing more to send
    store.write_sync(lambda db: sessions_repo.store_analysis(db, sid, result=ANALYSIS, error=None, attempts=2))
    outbox = db_rows(settings, "SELECT delivered_at, attempts FROM webhook_outbox WHERE session_id = ?", [sid])
    assert len(outbox) == 1 and outbox[0]["delivered_at"] is not None and outbox[0]["attempts"] == 2
    agent = await (await client.get(f"/api/agents/{agent_id}", headers=auth("alice"))).json()
    assert (agent["webhookStatus"], agent["webhookFailures"]) == ("ok", 0)


async def _delivered(client, auth, sid):
    rows = await (await client.get(f"/api/sessions/{sid}/webhooks", headers=auth("alice"))).json()
    return rows if rows and rows[-1]["delivered"] else None


async def test_a_skipped_analysis_sends_it_too_and_another_tenant_sees_no_attempts(client, auth, store):
    receiver = Receiver()
    agent_id = await _agent(client, auth, await receiver.start())
    _, sid = seed_call(store, "alice", agent_id=agent_id, turns=0)
    store.write_sync(lambda db: sessions_repo.skip_analysis(db, sid, reason="skipped: the caller never spoke"))
    await _until("a delivery", lambda: _delivered(client, auth, sid))
    [(body, _, _)] = receiver.got
    assert body["session"]["analysisStatus"] == "skipped"
    resp = await client.get(f"/api/sessions/{sid}/webhooks", headers=auth("mallory"))
    await assert_error(resp, 404)


async def test_ten_failed_deliveries_in_a_row_show_the_webhook_failing_until_one_succeeds(client, auth, store):
    receiver = Receiver(fail_first=1_000)
    agent_id = await _agent(client, auth, await receiver.start())
    for _ in range(4):  # 3 attempts each (callback_max_attempts): 12 failures in a row
        _, sid = seed_call(store, "alice", agent_id=agent_id)
        store.write_sync(
            lambda db, sid=sid: sessions_repo.store_analysis(db, sid, result=ANALYSIS, error=None, attempts=1)
        )

    async def failing():
        agent = await (await client.get(f"/api/agents/{agent_id}", headers=auth("alice"))).json()
        return agent if agent["webhookFailures"] >= 12 else None

    agent = await _until("12 failures", failing)
    assert agent["webhookStatus"] == "failing"

    receiver.fail_first = 0
    _, sid = seed_call(store, "alice", agent_id=agent_id)
    store.write_sync(lambda db: sessions_repo.store_analysis(db, sid, result=ANALYSIS, error=None, attempts=1))
    await _until("a delivery", lambda: _delivered(client, auth, sid))
    agent = await (await client.get(f"/api/agents/{agent_id}", headers=auth("alice"))).json()
    assert (agent["webhookStatus"], agent["webhookFailures"]) == ("ok", 0)


@pytest.mark.parametrize("field", ["webhookUrl", "contextWebhookUrl"])
async def test_a_webhook_on_a_metadata_address_is_refused_when_saved(client, auth, settings, field):
    before = table_snapshot(settings)
    resp = await client.post(
        "/api/agents", json={**AGENT_WIRE, field: "http://169.254.169.254/hook"}, headers=auth("alice")
    )
    body = await assert_error(resp, 422)
    assert body["detail"].startswith(f"body {field}:")
    assert table_snapshot(settings) == before
