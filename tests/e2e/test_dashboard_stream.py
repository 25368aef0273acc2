"""The dashboard's Live page on the real event stream (`GET /events/ws`, `?token=`: events written by the
repositories as a job writes them), and its Costs page on the real call analytics (`/api/analytics/summary`) and
campaign metrics (`/api/metrics/by-campaign`) over data seeded the way the product writes it: sessions, their
post-call analyses and usage through the repositories, external cost events and outreach events through their ingest
routes. The transfer button runs against the real `POST /api/override/transfer` (its command lands on the LiveKit
stub)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import aiohttp
import pytest
from aiohttp.test_utils import TestServer
from livekit.protocol import room as proto_room
from playwright.async_api import async_playwright, expect

from api.app import create_app
from api.auth import LocalIssuer
from api.keys import EVENTS
from core.store import events, sessions
from core.store import usage as ledger
from pipelines.metering import make_event
from pipelines.pricing import PriceBook
from tests.api.seed import ANALYSIS, seed_agent, seed_call, tenant_of
from tests.e2e.test_dashboard import ARGS, ARTIFACTS, CHROMIUM, DESKTOP, PHONE, WAIT_MS


@pytest.fixture
async def served(settings, store):
    server = TestServer(create_app(settings, store=store), host="127.0.0.1")
    await server.start_server()
    try:
        yield server
    finally:
        await server.close()


@pytest.fixture
async def page_for(served, settings):
    server = served
    token = LocalIssuer(settings.data_dir).issue("alice")
    async with async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        context = await browser.new_context(viewport=DESKTOP)
        # signed in already (the sign-in itself is covered by test_dashboard.py)
        await context.add_init_script(
            f"sessionStorage.setItem('voxarena.credential', JSON.stringify({{kind: 'password', token: '{token}'}}))"
        )
        page = await context.new_page()
        errors: list[str] = []
        page.on("pageerror", lambda e: errors.append(str(e)))
        try:
            yield page, str(server.make_url("/")), token, errors
        finally:
            await browser.close()


async def test_the_live_page_follows_the_event_stream_and_transfers_a_call(served, page_for, store, twirp_stub):
    server = served
    page, base, _token, errors = page_for
    agent = seed_agent(store, "alice")
    sid = store.write_sync(
        lambda db: sessions.create(  # a phone call in progress (a web call cannot transfer)
            db,
            owner_id=tenant_of("alice"),
            agent_id=agent["id"],
            room_name="room-phone",
            direction="outbound",
            phone_number="+15557654321",
            call_status="ANSWERED",
            status="active",
        )
    )
    store.write_sync(
        lambda db: sessions.append_item(
            db,
            session_id=sid,
            item_key="a0",
            speaker="AGENT",
            content="answer 0",
            timestamp="2026-01-10T10:00:00.000000Z",
        )
    )
    await page.goto(base + "#/live")
    await expect(page.get_by_test_id("live-mode")).to_contain_text("event stream connected", timeout=WAIT_MS)
    # a browser cannot set a WebSocket's headers: the stream took the credential from ?token=
    assert server.app[EVENTS].connections == {"alice": 1}

    item = page.locator(f'button[data-sid="{sid}"]')
    await expect(item).to_be_visible(timeout=WAIT_MS)
    await item.click()
    transcript = page.get_by_test_id("live-transcript")
    await expect(transcript).to_contain_text("answer 0", timeout=WAIT_MS)  # what was said before, from the API

    store.write_sync(
        lambda db: events.emit(
            db,
            owner_id=tenant_of("alice"),
            call_sid=sid,  # as the job's recorder
            event_type="transcript.partial",
            payload={"speaker": "user", "text": "I would like to"},
        )
    )
    await expect(transcript.locator(".turn.partial .content")).to_have_text("I would like to", timeout=WAIT_MS)
    store.write_sync(
        lambda db: sessions.append_item(
            db,
            session_id=sid,
            item_key="u1",
            speaker="USER",
            content="I would like to change my booking.",
            timestamp="2026-01-10T10:00:06.000000Z",
        )
    )
    await expect(transcript.locator(".turn.user .content").last).to_have_text("I would like to change my booking.")
    await expect(transcript.locator(".turn.partial")).to_have_count(0)
    store.write_sync(
        lambda db: sessions.append_item(
            db,
            session_id=sid,
            item_key="a1",
            speaker="AGENT",
            content="Of course, which date?",
            source="supervisor",
            timestamp="2026-01-10T10:00:07.000000Z",
        )
    )
    agent_turn = transcript.locator(".turn.agent").last  # transcript.final {speaker: "agent", source}
    await expect(agent_turn.locator(".content")).to_have_text("Of course, which date?", timeout=WAIT_MS)
    await expect(agent_turn.locator(".meta")).to_contain_text("said for the supervisor")
    store.write_sync(
        lambda db: events.emit_for_session(
            db,
            sid,
            "error",
            {  # as the job's recorder
                "detail": "tts failed: connection reset",
                "stage": "tts",
                "recoverable": True,
            },
        )
    )
    await expect(page.get_by_text("Stream: tts failed: connection reset (tts, call").first).to_be_visible(
        timeout=WAIT_MS
    )
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
    assert json.loads(req.data) == {"type": "transfer", "target": "tel:+15551111111", "mode": "cold"}

    store.write_sync(lambda db: sessions.end(db, sid, reason="transferred", ended_at="2026-01-10T10:00:09.000000Z"))
    await expect(item).to_be_hidden(timeout=5_000)  # from the event, well before the 15 s safety poll
    await expect(page.get_by_text("This call is not in progress any more.")).to_be_visible()
    await expect(page.get_by_text("Ended: transferred")).to_be_visible()  # call.ended's reason
    assert errors == []


async def test_the_live_page_polls_while_the_stream_is_down_and_returns_to_it(served, page_for, store):
    server = served
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


BOOK = PriceBook.load()
NOW = datetime.now(UTC).replace(microsecond=0)


def _ago(minutes: float) -> datetime:
    return NOW - timedelta(minutes=minutes)


def _iso(at: datetime) -> str:
    return at.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _dollars(value: float) -> str:
    """How the page writes an exact figure: every digit the API sent, at least cents."""
    text = format(Decimal(repr(value)), "f")
    whole, _, frac = text.partition(".")
    return f"${whole}.{frac.ljust(2, '0')}"


def _call(store, agent_id: str, campaign: str, started: float, seconds: int, outcome: str, **usage) -> str:
    """A call of the last hours, its post-call analysis and one usage event of its job."""
    _, sid = seed_call(
        store,
        "alice",
        agent_id=agent_id,
        started_at=_iso(_ago(started)),
        ended_at=_iso(_ago(started) + timedelta(seconds=seconds)),
        analysis={**ANALYSIS, "outcome": outcome},
    )
    store.write_sync(sessions.set_campaign, sid, campaign)
    event = make_event(
        BOOK,
        key=f"{sid}:usage",
        owner_id=tenant_of("alice"),
        session_id=sid,
        agent_id=agent_id,
        at=_ago(started) + timedelta(seconds=5),
        **usage,
    )
    store.write_sync(ledger.record_events, [event.as_dict()])
    return sid


async def test_costs_show_analytics_and_the_cost_per_successful_call_by_campaign(served, page_for, store):
    server = served
    page, base, token, errors = page_for
    support = seed_agent(store, "alice", name="Support")["id"]
    stt = {"provider": "deepgram", "model": None, "event_type": "stt_minutes"}
    _call(store, support, "Ohio", 180, 120, "Appointment booked", **stt, quantity=Decimal(2))
    _call(store, support, "Ohio", 150, 60, "caller declined the appointment", **stt, quantity=Decimal(1))
    _call(
        store,
        support,
        "Iowa",
        120,
        45,
        "Issue resolved",
        provider="gemini",
        model="gemini-2.5-flash",
        event_type="llm_tokens",
        token_kind="input",
        quantity=Decimal(1000),
    )
    seed_call(store, "bob", started_at=_iso(_ago(100)), ended_at=_iso(_ago(99)), analysis=ANALYSIS)  # not alice's
    sent_at = _iso(_ago(300))
    headers = {"Authorization": f"Bearer {token}"}
    async with aiohttp.ClientSession(base_url=str(server.make_url("/")), headers=headers) as http:

        async def post(path: str, body: list[dict]) -> None:
            async with http.post(path, json=body) as resp:
                assert resp.status == 200, await resp.text()
                assert (await resp.json())["errors"] == 0

        async def get(path: str, **query: str) -> dict:
            async with http.get(path, params=query) as resp:
                assert resp.status == 200, await resp.text()
                return await resp.json()

        await post(
            "/api/cost-events",
            [
                {
                    "provider": "openai",
                    "model": "o3-mini",
                    "tokens_in": 291,
                    "tokens_out": 572,
                    "cost_usd": 0.012345678,
                    "campaign_name": "Ohio",
                    "occurred_at": sent_at,
                }
            ],
        )
        await post(
            "/api/events",
            [
                {
                    "contact_email": f"c{i}@ohio.test",
                    "campaign": "Ohio",
                    "step": 1,
                    "event_type": kind,
                    "provider": "gmail",
                    "provider_message_id": f"m{i}-{kind}",
                    "event_ts": sent_at,
                }
                for i in range(4)
                for kind in ["sent"] + ["replied"] * (i == 0)
            ],
        )
        # the page's range: the last 30 days, UTC; its analytics: period=month
        today = datetime.now(UTC).date()
        by_campaign = await get("/api/metrics/by-campaign", start=str(today - timedelta(days=29)), end=str(today))
        analytics = await get("/api/analytics/summary", period="month")

    rows = {c["campaign"]: c for c in by_campaign["campaigns"]}
    assert set(rows) == {"Ohio", "Iowa"}
    ohio, iowa = rows["Ohio"], rows["Iowa"]
    assert (ohio["voice"]["calls"], ohio["voice"]["successful_calls"], iowa["voice"]["successful_calls"]) == (2, 1, 1)
    assert ohio["voice"]["cost_per_successful_call"] > 0 and ohio["cost_per_reply"] > 0 and ohio["replies"] == 1
    assert (analytics["total_calls"], analytics["successful_calls"], analytics["success_rate"]) == (3, 2, 0.67)

    await page.goto(base + "#/costs")
    chart = page.get_by_role("img", name="Cost per successful call by campaign")
    await expect(chart).to_contain_text("Ohio", timeout=WAIT_MS)
    for name, row in rows.items():
        await expect(chart).to_contain_text(_dollars(row["voice"]["cost_per_successful_call"]))
        cells = page.get_by_role("table", name="Campaigns").locator(f'tr[data-campaign="{name}"] td')
        voice = row["voice"]
        await expect(cells).to_have_text(
            [
                name,
                str(voice["calls"]),
                f"{voice['minutes']:g}",
                _dollars(voice["cost_usd"]),
                str(voice["successful_calls"]),
                _dollars(voice["cost_per_successful_call"]),
                str(row["replies"]),
                "—" if row["cost_per_reply"] is None else _dollars(row["cost_per_reply"]),
                _dollars(row["cost_usd"]),
            ]
        )

    cards = page.get_by_test_id("analytics-cards")
    await expect(cards).to_contain_text(f"{analytics['total_calls']} calls")
    await expect(cards).to_contain_text(f"{round(analytics['success_rate'] * 100)} %")
    await expect(cards).to_contain_text(f"{analytics['successful_calls']} successful calls")
    await expect(cards).to_contain_text(_dollars(analytics["cost_usd"]))
    await expect(cards).to_contain_text(_dollars(analytics["cost_per_successful_call"]))
    await expect(cards).to_contain_text(f"{analytics['total_minutes']:g} min")
    await expect(page.get_by_text("not available on this server")).to_have_count(0)
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    await page.screenshot(path=ARTIFACTS / "costs-analytics.png", full_page=True)
    await page.set_viewport_size(PHONE)  # every digit of an exact figure stays inside its card
    overflowing = await page.locator(".card .value").evaluate_all(
        "els => els.filter(e => e.scrollWidth > e.clientWidth || e.getBoundingClientRect().right >"
        " e.parentElement.getBoundingClientRect().right).map(e => e.textContent)"
    )
    assert overflowing == []
    await page.screenshot(path=ARTIFACTS / "costs-analytics-phone.png", full_page=True)
    assert errors == []
