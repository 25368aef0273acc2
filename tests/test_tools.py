"""An agent's HTTP tools as the runner calls them (core/tools.py), against a business API on loopback
(tests/harness/tool_server.py) that the outbound policy allows: the request each makes, signed; what the LLM gets
back on success, timeout, failure, a refused address and a redirect; and the record of every call on the session."""

from __future__ import annotations

import json
import time
from urllib.parse import parse_qs

import pytest
from cryptography.fernet import Fernet

from core.netpolicy import NetPolicy
from core.secrets import SecretBox
from core.store import calls as calls_repo
from core.store import events as events_repo
from core.store import sessions as sessions_repo
from core.tools import MAX_RESULT_BYTES, HttpTool, ToolRunner, agent_tools, declaration
from tests.api.seed import seed_call, tenant_of
from tests.harness.tool_server import ToolServer, verify

SCHEMA = {"type": "object", "properties": {"time": {"type": "string"}}, "required": ["time"]}


@pytest.fixture
async def business():
    server = await ToolServer(slow_seconds=10).start()
    yield server
    await server.close()


@pytest.fixture
def box() -> SecretBox:
    return SecretBox(Fernet.generate_key())


@pytest.fixture
async def runner(store, box):
    _, sid = seed_call(store, "alice", ended_at=None)
    r = ToolRunner(store, NetPolicy.of(["127.0.0.1"]), box, owner_id=tenant_of("alice"), session_id=sid)
    yield r
    await r.aclose()


def _tool(url: str, **kw) -> HttpTool:
    return HttpTool(name=kw.pop("name", "book_slot"), description="Book a slot.", parameters=SCHEMA, url=url, **kw)


def _secret(store, box) -> str:
    return store.write_sync(calls_repo.callback_secret, box, tenant_of("alice"))


async def test_a_post_tool_sends_the_arguments_signed_with_its_own_headers_and_gets_the_answer(
    store, box, runner, business
):
    tool = _tool(business.url("/book"), headers={"Authorization": box.seal("Bearer biz-token-123")})
    result = await runner.call_http(tool, {"time": "10:30"}, "call-1")

    assert result.status == "ok" and result.http_status == 200
    assert json.loads(result.text) == {"booked": True, "slot": "10:30", "reference": "BK-1042"}
    [seen] = business.on("/book")
    assert seen.method == "POST" and seen.json() == {"time": "10:30"}
    assert seen.headers["Authorization"] == "Bearer biz-token-123"
    assert seen.headers["X-Voxarena-Session-Id"] == runner.session_id
    assert seen.headers["X-Voxarena-Tool-Call-Id"] == "call-1"
    assert verify(_secret(store, box), seen.headers["X-Voxarena-Signature"], seen.body)
    assert not verify("another-secret", seen.headers["X-Voxarena-Signature"], seen.body)


async def test_a_get_tool_sends_its_arguments_as_the_query_string_and_signs_it(store, box, runner, business):
    tool = HttpTool(
        name="weather", description="", parameters=SCHEMA, url=business.url("/weather?units=c"), method="GET"
    )
    result = await runner.call_http(tool, {"city": "Zürich", "days": 2, "hourly": False}, "call-2")

    assert result.status == "ok"
    assert json.loads(result.text)["city"] == "Zürich"
    [seen] = business.on("/weather")
    assert seen.method == "GET" and seen.body == b""
    assert parse_qs(seen.query) == {"units": ["c"], "city": ["Zürich"], "days": ["2"], "hourly": ["false"]}
    assert seen.query.startswith("units=c&city=Z%C3%BCrich&")  # percent-encoded, and signed as sent
    assert verify(_secret(store, box), seen.headers["X-Voxarena-Signature"], seen.query.encode())


async def test_a_tool_past_its_deadline_is_a_timeout_the_llm_can_speak_about(runner, business):
    started = time.monotonic()
    result = await runner.call_http(_tool(business.url("/slow"), timeout_ms=300), {"time": "9"}, "call-3")
    elapsed = time.monotonic() - started

    assert result.status == "timeout"
    assert result.text == "error: book_slot did not answer within 0.3 s"
    assert elapsed < 5, elapsed  # the server holds it for 10 s


async def test_a_failing_answer_is_an_error_with_its_status(runner, business):
    result = await runner.call_http(_tool(business.url("/fail")), {"time": "9"}, "call-4")
    assert (result.status, result.http_status) == ("error", 503)
    assert result.text == "error: book_slot answered HTTP 503: upstream down"


async def test_an_answer_over_16_kb_is_cut_before_the_llm_sees_it(runner, business):
    result = await runner.call_http(_tool(business.url("/big")), {"time": "9"}, "call-5")
    assert result.status == "ok"
    assert result.text == "x" * MAX_RESULT_BYTES + " …(truncated)"


async def test_a_metadata_address_is_refused_and_nothing_is_sent(runner, business):
    result = await runner.call_http(_tool("http://169.254.169.254/latest/meta-data/"), {"time": "9"}, "call-6")
    assert result.status == "refused"
    assert "169.254.169.254" in result.text and "VOXARENA_OUTBOUND_HTTP_ALLOWED_HOSTS" in result.text


async def test_a_redirect_to_a_metadata_address_is_refused(runner, business):
    url = business.url("/redirect?to=http://169.254.169.254/latest/meta-data/")
    result = await runner.call_http(_tool(url), {"time": "9"}, "call-7")
    assert result.status == "refused", result
    assert len(business.on("/redirect")) == 1


async def test_the_business_headers_are_not_sent_across_a_redirect_to_another_origin(box, runner, business):
    other = await ToolServer().start()
    try:
        url = business.url(f"/redirect?to={other.url('/weather')}")
        tool = _tool(url, headers={"Authorization": box.seal("Bearer biz-token-123")})
        result = await runner.call_http(tool, {"time": "9"}, "call-8")
        assert result.status == "ok"
        [first] = business.on("/redirect")
        [moved] = other.on("/weather")
        assert first.headers["Authorization"] == "Bearer biz-token-123"
        assert "Authorization" not in moved.headers
        assert moved.method == "GET"  # a 302 after a POST is followed with a GET, as browsers do
    finally:
        await other.close()


async def test_every_call_is_recorded_on_the_session_with_a_live_event_as_it_starts_and_ends(store, runner, business):
    last = store.read_sync(events_repo.last_id)
    await runner.call_http(_tool(business.url("/book")), {"time": "10:30"}, "call-9")
    await runner.call_http(_tool(business.url("/fail")), {"time": "11:00"}, "call-10")

    record = store.read_sync(sessions_repo.get, tenant_of("alice"), runner.session_id)
    calls = record["tool_calls"]
    assert [(c["id"], c["name"], c["status"], c["http_status"]) for c in calls] == [
        ("call-9", "book_slot", "ok", 200),
        ("call-10", "book_slot", "error", 503),
    ]
    assert calls[0]["arguments"] == {"time": "10:30"} and calls[0]["type"] == "http"
    assert calls[0]["latency_ms"] >= 0 and "BK-1042" in calls[0]["result"]
    stream = [(e["type"], json.loads(e["payload"])) for e in store.read_sync(events_repo.after, last)]
    assert [(t, p["id"]) for t, p in stream] == [
        ("tool.called", "call-9"),
        ("tool.result", "call-9"),
        ("tool.called", "call-10"),
        ("tool.result", "call-10"),
    ]
    assert stream[0][1]["arguments"] == {"time": "10:30"}
    assert stream[3][1]["status"] == "error" and stream[3][1]["httpStatus"] == 503


async def test_an_llm_that_reuses_a_call_id_has_each_call_recorded(store, runner, business):
    await runner.call_http(_tool(business.url("/book")), {"time": "9"}, "same")
    await runner.call_http(_tool(business.url("/book")), {"time": "10"}, "same")
    calls = store.read_sync(sessions_repo.get, tenant_of("alice"), runner.session_id)["tool_calls"]
    assert [(c["arguments"], c["status"]) for c in calls] == [({"time": "9"}, "ok"), ({"time": "10"}, "ok")]
    assert calls[0]["id"] == "same" and calls[1]["id"].startswith("same~")


def test_a_transfer_tool_keeps_its_mode_and_a_warm_one_tells_the_llm_the_caller_waits_on_hold():
    cold, warm = agent_tools(
        {
            "tools": [
                {"type": "transfer_call", "target": "+15550100"},
                {"type": "transfer_call", "target": "sip:desk@pbx.example.com", "mode": "warm"},
            ]
        }
    )
    assert (cold.mode, warm.mode) == ("cold", "warm")
    assert "hold" not in declaration(cold)["description"]
    assert "on hold" in declaration(warm)["description"]
    assert declaration(warm)["parameters"] == declaration(cold)["parameters"]
