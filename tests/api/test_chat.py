"""Text conversations with an agent (POST /trigger-agent text mode, /ws/chat/{session_id}) through the real Gemini
plugin against the Gemini fake, in the real API process: history, streaming, exact metering, analysis when idle or
closed, and tenant isolation."""

from __future__ import annotations

import asyncio
import json
import time
from decimal import Decimal

import aiohttp
import pytest
from livekit import api as lk
from livekit.protocol import agent_dispatch as proto_dispatch

from api.keys import ISSUER
from core.store import sessions as sessions_repo
from core.store import tenants as tenants_repo
from core.store.timefmt import parse_iso
from pipelines.pricing import PriceBook, cost_nanos
from tests.api.chat_support import fakes, idle_seconds, llm_requests, settings, texts, wait_session  # noqa: F401  (fixtures, found by pytest by name)
from tests.api.seed import ANALYSIS, seed_agent, seed_call
from tests.conftest import LIVEKIT_KEY, LIVEKIT_SECRET, assert_error, table_snapshot

PROMPT = "You are the front desk of the Lakeside clinic."


def _agent(store, user: str = "alice", **changes) -> dict:
    return seed_agent(store, user, name="Front Desk", systemPrompt=PROMPT, **changes)


async def _say(client, auth, message: str, user: str = "alice", **extra) -> dict:
    r = await client.post(
        "/trigger-agent",
        json={
            "message": message,
            "agent_slug": "front-desk",
            "user_id": "u-1",
            "conversation_id": "conv-1",
            "mode": "text",
            **extra,
        },
        headers=auth(user),
    )
    assert r.status == 200, await r.text()
    return await r.json()


async def test_text_mode_answers_with_the_agents_llm_and_keeps_the_history_over_three_messages(
    client, auth, store, fakes
):
    _agent(store)
    fakes.update_script(llm_replies=["We open at nine.", "Until five.", "Yes, on Saturdays too."])
    first = await _say(client, auth, "When do you open?")
    assert first["success"] is True and first["mode"] == "text" and first["response"] == "We open at nine."
    assert first["conversation_id"] == "conv-1" and first["previous_session_id"] is None
    sid = first["session_id"]
    second = await _say(client, auth, "And when do you close?", session_id=sid)
    third = await _say(client, auth, "Are you open at weekends?", session_id=sid)
    assert second["session_id"] == third["session_id"] == sid
    assert (second["response"], third["response"]) == ("Until five.", "Yes, on Saturdays too.")

    last = llm_requests(fakes)[-1]  # the third request carries the two turns before it, in order
    assert texts(last) == [
        ("user", "When do you open?"),
        ("model", "We open at nine."),
        ("user", "And when do you close?"),
        ("model", "Until five."),
        ("user", "Are you open at weekends?"),
    ]
    assert PROMPT in last["systemInstruction"]["parts"][0]["text"]

    s = await (await client.get(f"/api/sessions/{sid}", headers=auth("alice"))).json()
    assert s["channel"] == "text" and s["status"] == "active" and s["roomName"] is None
    assert (s["user_id"], s["conversation_id"]) == ("u-1", "conv-1")
    assert [(t["speaker"], t["content"]) for t in s["transcript"]] == [
        ("USER", "When do you open?"),
        ("AGENT", "We open at nine."),
        ("USER", "And when do you close?"),
        ("AGENT", "Until five."),
        ("USER", "Are you open at weekends?"),
        ("AGENT", "Yes, on Saturdays too."),
    ]
    agent_turn = s["transcript"][1]
    assert agent_turn["providers"]["llm"] == "gemini" and agent_turn["metrics"]["llm_ttft"] >= 0

    chats = await (await client.get("/api/sessions?channel=text", headers=auth("alice"))).json()
    voices = await (await client.get("/api/sessions?channel=voice", headers=auth("alice"))).json()
    assert [x["id"] for x in chats["sessions"]] == [sid] and voices["total"] == 0
    assert s["campaign"] is None


async def test_a_text_conversation_carries_the_campaign_it_was_started_with(client, auth, store, fakes):
    _agent(store)
    fakes.update_script(llm_replies=["Hello.", "Bye."])
    first = await _say(client, auth, "Hi", campaign="spring-promo")
    await _say(client, auth, "Bye", session_id=first["session_id"])  # a later message needs not repeat it
    s = await (await client.get(f"/api/sessions/{first['session_id']}", headers=auth("alice"))).json()
    assert s["campaign"] == "spring-promo"


async def test_every_token_the_fake_reported_is_metered_and_priced_from_pricing_yaml(client, auth, store, fakes):
    _agent(store)
    sid = (await _say(client, auth, "When do you open?"))["session_id"]
    await _say(client, auth, "And on Sundays?", session_id=sid)
    counted = fakes.counters()["gemini"]
    r = await client.get(f"/api/sessions/{sid}/cost-breakdown", headers=auth("alice"))
    breakdown = await r.json()
    events = breakdown["events"]
    tokens = {kind: sum(e["quantity"] for e in events if e["token_kind"] == kind) for kind in ("input", "output")}
    assert tokens == {"input": counted["prompt_tokens"], "output": counted["completion_tokens"]}
    assert all(e["event_type"] == "llm_tokens" and e["provider"] == "gemini" and e["priced"] for e in events)
    book = PriceBook.load()
    expected = 0
    for e in events:
        quote = book.quote(
            provider="gemini",
            event_type="llm_tokens",
            model=e["model"],
            token_kind=e["token_kind"],
            at=parse_iso(e["occurred_at"]),
        )
        expected += cost_nanos(Decimal(str(int(e["quantity"]))), quote.unit_cost)
    assert breakdown["total_cost_nanos"] == expected > 0
    # the same money in the tenant's totals
    summary = await (await client.get("/api/costs/summary", headers=auth("alice"))).json()
    assert summary["total_cost_nanos"] == expected


async def test_the_websocket_streams_deltas_then_the_final_message_in_the_same_session_as_post(
    client, auth, store, fakes
):
    _agent(store)
    fakes.update_script(llm_chunks=4, llm_replies=["Hello there, how can I help?", "We open at nine every day."])
    sid = (await _say(client, auth, "Hi"))["session_id"]
    async with client.ws_connect(f"/ws/chat/{sid}", headers=auth("alice")) as ws:
        await ws.send_json(
            {"type": "message", "content": "When do you open?", "user_id": "u-1", "timestamp": "2026-01-14T12:00:00Z"}
        )
        deltas, final = [], None
        async with asyncio.timeout(20):
            while final is None:
                msg = await ws.receive_json()
                if msg["type"] == "delta":
                    deltas.append(msg["content"])
                else:
                    final = msg
    assert len(deltas) == 4 and "".join(deltas) == "We open at nine every day."
    assert final["type"] == "message" and final["role"] == "assistant" and final["content"] == "".join(deltas)
    assert final["timestamp"] and final["session_id"] == sid
    # the websocket's turn is in the history the next POST sees
    await _say(client, auth, "Thanks", session_id=sid)
    assert texts(llm_requests(fakes)[-1])[-3:] == [
        ("user", "When do you open?"),
        ("model", "We open at nine every day."),
        ("user", "Thanks"),
    ]


async def test_the_websocket_takes_a_token_in_the_query_and_reports_errors_without_closing(
    client, auth, store, fakes, token_for
):
    _agent(store)
    sid = (await _say(client, auth, "Hi"))["session_id"]
    async with client.ws_connect(f"/ws/chat/{sid}?token={token_for('alice')}") as ws:
        for bad, needle in (
            ("not json", "JSON"),
            ({"type": "message", "content": "  "}, "non-empty"),
            ({"type": "nope"}, "type must be"),
        ):
            await (ws.send_str(bad) if isinstance(bad, str) else ws.send_json(bad))
            msg = await ws.receive_json(timeout=10)
            assert msg["type"] == "error" and needle in msg["detail"], msg
        fakes.update_script(failures={"gemini": {"mode": "reject", "times": 2}})  # the try and its one retry
        await ws.send_json({"type": "message", "content": "Are you there?"})
        msg = await ws.receive_json(timeout=20)
        assert msg["type"] == "error" and "gemini" in msg["detail"], msg
        await ws.send_json({"type": "message", "content": "Are you there now?"})  # the socket is still open
        async with asyncio.timeout(20):
            while (msg := await ws.receive_json())["type"] == "delta":
                pass
        assert msg["type"] == "message" and msg["content"] == "This is a scripted reply."
        await ws.send_json({"type": "end"})
        assert (await ws.receive_json(timeout=10))["type"] == "ended"
    await wait_session(client, auth, sid, lambda s: s["analysisStatus"] == "completed")


async def test_another_tenants_session_is_refused_with_4404_before_any_data_and_never_continued(
    client, auth, store, fakes, settings
):
    _agent(store, "alice")
    _agent(store, "bob")
    alice = await _say(client, auth, "My name is Alice and my card ends 4242")
    sid = alice["session_id"]
    async with client.ws_connect(f"/ws/chat/{sid}", headers=auth("bob")) as ws:
        msg = await ws.receive(timeout=10)
        assert msg.type == aiohttp.WSMsgType.CLOSE and ws.close_code == 4404, msg
    async with client.ws_connect("/ws/chat/no-such-session", headers=auth("alice")) as ws:
        await ws.receive(timeout=10)
        assert ws.close_code == 4404
    r = await client.get(f"/ws/chat/{sid}")  # no credential: refused before the upgrade
    await assert_error(r, 401)

    before = table_snapshot(settings)
    bob = await _say(client, auth, "Who am I?", user="bob", session_id=sid)
    assert bob["session_id"] != sid and bob["previous_session_id"] is None  # a new conversation of bob's own
    assert "Alice" not in str(llm_requests(fakes)[-1]["contents"])
    after = table_snapshot(settings)
    alice_items = [row for row in after["transcript_items"] if row[1] == sid]
    assert alice_items == [row for row in before["transcript_items"] if row[1] == sid]
    r = await client.post("/trigger-agent", json={"message": "hi", "agent_slug": "nobody"}, headers=auth("bob"))
    await assert_error(r, 404)


async def test_bad_requests_are_refused_and_write_nothing(client, auth, store, settings):
    agent = _agent(store)
    before = table_snapshot(settings)
    for body, status in (
        ({"message": "hi", "agent_slug": "unknown"}, 404),
        ({"message": "", "agent_slug": "front-desk", "mode": "text"}, 422),
        ({"message": "   ", "agent_slug": "front-desk"}, 422),
        ({"message": "x" * 8001, "agent_slug": "front-desk"}, 422),
        ({"message": "hi"}, 422),
    ):
        r = await client.post("/trigger-agent", json=body, headers=auth("alice"))
        await assert_error(r, status)
    r = await client.post("/trigger-agent", data="{not json", headers=auth("alice"))
    await assert_error(r, 400)
    r = await client.post("/trigger-agent", json={"message": "hi", "agent_slug": "front-desk"})
    await assert_error(r, 401)
    assert table_snapshot(settings) == before
    r = await client.put(f"/api/v1/agents/{agent['id']}", json={"enabled": False}, headers=auth("alice"))
    assert r.status == 200, await r.text()
    r = await client.post("/trigger-agent", json={"message": "hi", "agent_slug": "front-desk"}, headers=auth("alice"))
    await assert_error(r, 409)


@pytest.mark.parametrize("idle_seconds", [0.6])
async def test_a_conversation_that_goes_idle_ends_and_is_analysed_with_its_tokens_metered(client, auth, store, fakes):
    _agent(store)
    sid = (await _say(client, auth, "When do you open?"))["session_id"]
    s = await wait_session(client, auth, sid, lambda s: s["analysisStatus"] == "completed")
    assert s["status"] == "ended" and s["endReason"] == "idle" and s["analysis"] == ANALYSIS
    events = (await (await client.get(f"/api/sessions/{sid}/cost-breakdown", headers=auth("alice"))).json())["events"]
    analysis = [e for e in events if "/analysis/" in e["idempotency_key"]]
    counted = fakes.counters()["gemini"]
    assert analysis and sum(e["quantity"] for e in events if e["token_kind"] == "input") == counted["prompt_tokens"]

    # a message to the ended conversation goes on in a new session that remembers it
    again = await _say(client, auth, "And on Sundays?", session_id=sid)
    assert again["session_id"] != sid and again["previous_session_id"] == sid
    assert again["conversation_id"] == "conv-1"
    assert texts(llm_requests(fakes)[-1])[0] == ("user", "When do you open?")


async def test_closing_a_conversation_ends_and_analyses_it_once(client, auth, store, fakes):
    _agent(store)
    sid = (await _say(client, auth, "When do you open?"))["session_id"]
    r = await client.post(f"/api/sessions/{sid}/end", headers=auth("alice"))
    assert r.status == 200 and (await r.json()) == {"success": True, "session_id": sid, "status": "ended"}
    await assert_error(await client.post(f"/api/sessions/{sid}/end", headers=auth("alice")), 409)
    await assert_error(await client.post(f"/api/sessions/{sid}/end", headers=auth("bob")), 404)
    s = await wait_session(client, auth, sid, lambda s: s["analysisStatus"] == "completed")
    assert s["endReason"] == "closed" and s["analysis"] == ANALYSIS
    _, call_sid = seed_call(store, "alice", ended_at=None)
    await assert_error(await client.post(f"/api/sessions/{call_sid}/end", headers=auth("alice")), 409)


@pytest.mark.parametrize("primary_fails", [False, True], ids=["primary-healthy", "primary-failing"])
async def test_a_conversation_with_a_fallback_llm_is_analysed_and_billed_to_the_llm_that_answered(
    client, auth, store, fakes, primary_fails
):
    _agent(store, fallbackLlmProviders=["openai"])
    if primary_fails:
        fakes.fail("gemini", "reject")  # for the reply and the analysis alike
    sid = (await _say(client, auth, "When do you open?"))["session_id"]
    assert (await client.post(f"/api/sessions/{sid}/end", headers=auth("alice"))).status == 200
    s = await wait_session(client, auth, sid, lambda s: s["analysisStatus"] not in (None, "pending"))
    assert s["analysisStatus"] == "completed" and s["analysis"] == ANALYSIS, s
    served = "openai" if primary_fails else "gemini"
    events = (await (await client.get(f"/api/sessions/{sid}/cost-breakdown", headers=auth("alice"))).json())["events"]
    analysis = [e for e in events if "/analysis/" in e["idempotency_key"]]
    assert {e["provider"] for e in analysis} == {served}, analysis
    counted = fakes.counters()
    assert counted[served]["json_requests"] == 1
    assert counted["openai" if served == "gemini" else "gemini"].get("completed", 0) == 0
    # the reply and the analysis were both served by `served`: every token it counted is billed, none twice
    assert sum(e["quantity"] for e in events if e["token_kind"] == "input") == counted[served]["prompt_tokens"]
    assert sum(e["quantity"] for e in events if e["token_kind"] == "output") == counted[served]["completion_tokens"]


async def test_voice_mode_dispatches_through_the_token_routes_checks_and_text_chats_take_no_call_slot(
    client, auth, store, fakes, twirp_stub
):
    _, calls = twirp_stub
    _agent(store)
    store.write_sync(
        lambda db: tenants_repo.update(db, tenants_repo.ensure_personal(db, "alice")["id"], {"max_concurrent_calls": 1})
    )
    await _say(client, auth, "Hi")
    await _say(client, auth, "Hi again")  # two live chats, a limit of one call: chats are no calls
    assert await (await client.get("/api/calls/active", headers=auth("alice"))).json() == []
    voice = {
        "room_name": "room-123",
        "agent_slug": "front-desk",
        "user_id": "user-123",
        "conversation_id": "conv-123",
        "platform": "livekit",
    }
    r = await client.post("/trigger-agent", json=voice, headers=auth("alice"))
    body = await r.json()
    assert r.status == 200, body
    assert (body["success"], body["mode"], body["room_name"]) == (True, "voice", "room-123")
    claims = lk.TokenVerifier(LIVEKIT_KEY, LIVEKIT_SECRET).verify(body["token"])
    assert claims.video.room == "room-123" and claims.identity == body["identity"] and body["server_url"]
    ((name, raw),) = calls
    req = proto_dispatch.CreateAgentDispatchRequest()
    req.ParseFromString(raw)
    assert name == "CreateDispatch" and req.room == "room-123"
    assert json.loads(req.metadata)["session_id"] == body["session_id"]
    row = store.read_sync(sessions_repo.get_row, body["session_id"])
    assert (row["channel"], row["user_id"], row["conversation_id"]) == ("voice", "user-123", "conv-123")
    # the same tenant limit as the token route: the one call slot is taken
    r = await client.post("/trigger-agent", json={**voice, "room_name": "room-124"}, headers=auth("alice"))
    await assert_error(r, 429, "concurrency_limit")
    assert len(calls) == 1


async def test_voice_mode_with_no_worker_free_is_503_with_retry_after_like_the_token_route(
    settings, store, fakes, twirp_stub, auth
):
    from aiohttp.test_utils import TestClient, TestServer

    from api.app import create_app

    _, calls = twirp_stub
    _agent(store)

    async def capacity() -> str | None:
        return "1 calls running or starting, the most this worker takes is 1"

    async with TestClient(
        TestServer(create_app(settings, store=store, worker_capacity=capacity), host="127.0.0.1")
    ) as client:
        before = table_snapshot(settings)
        r = await client.post(
            "/trigger-agent",
            json={"agent_slug": "front-desk", "platform": "livekit"},
            headers={"Authorization": f"Bearer {client.app[ISSUER].issue('alice')}"},
        )
        await assert_error(r, 503, "service_unavailable")
        assert r.headers["Retry-After"] == "5" and calls == []
        assert table_snapshot(settings) == before


async def test_shutdown_closes_open_chat_sockets_and_waits_for_the_reply_in_flight(settings, store, fakes, token_for):
    from aiohttp.test_utils import TestClient, TestServer

    from api.app import create_app
    from api.keys import ISSUER

    _agent(store)
    fakes.update_script(llm_chunks=4, llm_chunk_delay_ms=200)
    client = TestClient(TestServer(create_app(settings, store=store), host="127.0.0.1"))
    await client.start_server()
    token = client.app[ISSUER].issue("alice")
    headers = {"Authorization": f"Bearer {token}"}
    r = await client.post("/trigger-agent", json={"message": "Hi", "agent_slug": "front-desk"}, headers=headers)
    sid = (await r.json())["session_id"]
    ws = await client.ws_connect(f"/ws/chat/{sid}", headers=headers)
    await ws.send_json({"type": "message", "content": "Tell me everything"})
    assert (await ws.receive_json(timeout=20))["type"] == "delta"  # the reply is under way
    started = time.monotonic()
    await client.close()  # the app shuts down with the socket open and the reply half streamed
    assert time.monotonic() - started < 10
    assert ws.closed
    items = store.read_sync(
        lambda db: list(
            db.query("SELECT speaker, content FROM transcript_items WHERE session_id = ? ORDER BY id", [sid])
        )
    )
    assert [i["speaker"] for i in items] == ["USER", "AGENT", "USER", "AGENT"]  # the reply was recorded whole
    assert items[-1]["content"] == "This is a scripted reply."


async def test_an_agent_changed_mid_conversation_answers_with_its_new_configuration(client, auth, store, fakes):
    agent = _agent(store)
    sid = (await _say(client, auth, "Hi"))["session_id"]
    await _say(client, auth, "Hi again", session_id=sid)  # the same agent version: its LLM is reused
    r = await client.put(
        f"/api/agents/{agent['id']}", json={"systemPrompt": "You are the night desk."}, headers=auth("alice")
    )
    assert r.status == 200, await r.text()
    await _say(client, auth, "Still there?", session_id=sid)
    prompts = [req["systemInstruction"]["parts"][0]["text"] for req in llm_requests(fakes)]
    assert prompts == [PROMPT, PROMPT, "You are the night desk."]
