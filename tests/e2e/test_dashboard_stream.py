"""The dashboard's Live page on the real event stream (`GET /events/ws`, `?token=`: events written by the
repositories as a job writes them), and its views for routes this branch does not serve yet, against their
documented shapes: the Costs page's analytics (`/api/analytics/summary`) and campaign costs
(`/api/metrics/by-campaign`). The real app serves stand-ins for those as extra routes of its route table, so the page
finds them in /openapi.json exactly as it will find the real ones. The transfer button runs against the real
`POST /api/override/transfer` (its command lands on the LiveKit stub)."""

from __future__ import annotations

import json

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from livekit.protocol import room as proto_room
from playwright.async_api import async_playwright, expect

from api.app import create_app
from api.auth import LocalIssuer
from api.keys import EVENTS
from api.routing import Call, Route
from api.store import events, sessions
from tests.api.seed import seed_agent, seed_call, tenant_of
from tests.e2e.test_dashboard import ARGS, ARTIFACTS, CHROMIUM, DESKTOP, WAIT_MS


class FakeFeatures:
    """The analytics routes."""

    async def analytics(self, call: Call) -> web.Response:
        return web.json_response({"total_agents": 2, "total_calls": 850, "total_minutes": 3200,
                                  "average_call_duration": 226, "success_rate": 0.92, "busiest_hour": 14,
                                  "top_agents": [{"agent_id": "a1", "name": "Support", "calls": 245, "minutes": 980}]})

    async def campaigns(self, call: Call) -> web.Response:
        return web.json_response({"campaigns": [
            {"campaign": "Ohio", "cost_usd": 4.52, "successful_calls": 12, "cost_per_successful_call": 0.3767},
            {"campaign": "Iowa", "cost_usd": 1.2, "successful_calls": 3, "cost_per_successful_call": 0.4}],
            "start_date": call.request.query.get("start"), "end_date": call.request.query.get("end")})

    def routes(self) -> list[Route]:
        return [
            Route("GET", "/api/analytics/summary", self.analytics, "Analytics (test stand-in)", "test", raw=True),
            Route("GET", "/api/metrics/by-campaign", self.campaigns, "Campaigns (test stand-in)", "test", raw=True),
        ]


@pytest.fixture
async def served(settings, store):
    features = FakeFeatures()
    app = create_app(settings, store=store, extra_routes=features.routes())
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    try:
        yield server, features
    finally:
        await server.close()


@pytest.fixture
async def page_for(served, settings):
    server, _ = served
    token = LocalIssuer(settings.data_dir).issue("alice")
    async with async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        context = await browser.new_context(viewport=DESKTOP)
        # signed in already (the sign-in itself is covered by test_dashboard.py)
        await context.add_init_script(
            f"sessionStorage.setItem('voxarena.credential', JSON.stringify({{kind: 'password', token: '{token}'}}))")
        page = await context.new_page()
        errors: list[str] = []
        page.on("pageerror", lambda e: errors.append(str(e)))
        try:
            yield page, str(server.make_url("/")), token, errors
        finally:
            await browser.close()


async def test_the_live_page_follows_the_event_stream_and_transfers_a_call(served, page_for, store, twirp_stub):
    server, _ = served
    page, base, token, errors = page_for
    agent = seed_agent(store, "alice")
    sid = store.write_sync(lambda db: sessions.create(  # a phone call in progress (a web call cannot transfer)
        db, owner_id=tenant_of("alice"), agent_id=agent["id"], room_name="room-phone", direction="outbound",
        phone_number="+15557654321", call_status="ANSWERED", status="active"))
    store.write_sync(lambda db: sessions.append_item(db, session_id=sid, item_key="a0", speaker="AGENT",
                                                     content="answer 0", timestamp="2026-01-10T10:00:00.000000Z"))
    await page.goto(base + "#/live")
    await expect(page.get_by_test_id("live-mode")).to_contain_text("event stream connected", timeout=WAIT_MS)
    # a browser cannot set a WebSocket's headers: the stream took the credential from ?token=
    assert server.app[EVENTS].connections == {"alice": 1}

    item = page.locator(f'button[data-sid="{sid}"]')
    await expect(item).to_be_visible(timeout=WAIT_MS)
    await item.click()
    transcript = page.get_by_test_id("live-transcript")
    await expect(transcript).to_contain_text("answer 0", timeout=WAIT_MS)  # what was said before, from the API

    store.write_sync(lambda db: events.emit(db, owner_id=tenant_of("alice"), call_sid=sid,  # as the job's recorder
                                            event_type="transcript.partial",
                                            payload={"speaker": "user", "text": "I would like to"}))
    await expect(transcript.locator(".turn.partial .content")).to_have_text("I would like to", timeout=WAIT_MS)
    store.write_sync(lambda db: sessions.append_item(db, session_id=sid, item_key="u1", speaker="USER",
                                                     content="I would like to change my booking.",
                                                     timestamp="2026-01-10T10:00:06.000000Z"))
    await expect(transcript.locator(".turn.user .content").last).to_have_text("I would like to change my booking.")
    await expect(transcript.locator(".turn.partial")).to_have_count(0)
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    await page.screenshot(path=ARTIFACTS / "live-stream.png", full_page=True)

    await page.get_by_label("Transfer to (E.164 or SIP URI)").fill("+15551111111")
    await page.get_by_role("button", name="Transfer", exact=True).click()
    await expect(page.get_by_text("Transferring to +15551111111").first).to_be_visible(timeout=WAIT_MS)
    _, livekit_calls = twirp_stub
    name, raw = livekit_calls[-1]
    req = proto_room.SendDataRequest()
    req.ParseFromString(raw)
    assert name == "SendData" and req.room == "room-phone"
    assert json.loads(req.data) == {"type": "transfer", "target": "tel:+15551111111"}

    store.write_sync(lambda db: sessions.end(db, sid, reason="transferred", ended_at="2026-01-10T10:00:09.000000Z"))
    await expect(item).to_be_hidden(timeout=5_000)  # from the event, well before the 15 s safety poll
    await expect(page.get_by_text("This call is not in progress any more.")).to_be_visible()
    assert errors == []


async def test_the_live_page_polls_while_the_stream_is_down_and_returns_to_it(served, page_for, store):
    server, _ = served
    page, base, _, errors = page_for
    await page.goto(base + "#/live")
    await expect(page.get_by_test_id("live-mode")).to_contain_text("event stream connected", timeout=WAIT_MS)
    server.app[EVENTS].close_all()  # the stream drops (1001): the page polls, then reconnects by itself
    await expect(page.get_by_test_id("live-mode")).to_contain_text("polling", timeout=WAIT_MS)
    _, sid = seed_call(store, "alice", ended_at=None, turns=0)
    await expect(page.locator(f'button[data-sid="{sid}"]')).to_be_visible(timeout=WAIT_MS)
    await expect(page.get_by_test_id("live-mode")).to_contain_text("event stream connected", timeout=WAIT_MS)
    assert server.app[EVENTS].connections == {"alice": 1}
    assert errors == []


async def test_costs_show_analytics_and_the_cost_per_successful_call_by_campaign(page_for):
    page, base, _, errors = page_for
    await page.goto(base + "#/costs")
    campaigns = page.get_by_role("img", name="Cost per successful call by campaign")
    await expect(campaigns).to_contain_text("Ohio", timeout=WAIT_MS)
    await expect(campaigns).to_contain_text("$0.3767")
    await expect(page.get_by_text("850 calls")).to_be_visible()
    await expect(page.get_by_text("92 %")).to_be_visible()
    await expect(page.get_by_text("not available on this server")).to_have_count(0)
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    await page.screenshot(path=ARTIFACTS / "costs-analytics.png", full_page=True)
    assert errors == []
