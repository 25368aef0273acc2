"""A campaign over real SIP (livekit-sip, sipp callees): the product's own dialer places each call on the outbound
path, a busy callee (486) and an answering one give their outcomes, and the campaign's counts and costs are the
ledger's."""

from __future__ import annotations

import asyncio
import time

from tests.harness.audio import speech_ulaw_wav

NUMBERS = ["+14155550100", "+14155550101"]


async def _until(what: str, check, timeout: float, product) -> object:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if result := await check():
            return result
        await asyncio.sleep(0.25)
    raise AssertionError(f"{what} not reached in {timeout}s\n--- product log ---\n{product.log_tail(80)}")


async def test_a_campaign_dials_its_contacts_one_at_a_time_and_counts_each_outcome(sip_product, sip_callee):
    product = sip_product
    busy = sip_callee("uas_busy.xml", answer_after_ms=200)
    agent_id = await product.create_agent(firstMessage="Hello, this is the clinic with a reminder.")
    status, made = await product.request(
        "POST",
        "/api/campaigns",
        json={
            "name": "sip-reminders",
            "agent_id": agent_id,
            "contacts": [{"phone_number": n, "variables": {"customer": f"C{i}"}} for i, n in enumerate(NUMBERS)],
            "max_concurrent_calls": 1,
        },
    )
    assert status == 201, made
    cid = made["id"]

    async def contacts() -> list[dict]:
        status, page = await product.request("GET", f"/api/campaigns/{cid}/contacts")
        assert status == 200, page
        return page["contacts"]

    async def first_dialled() -> bool:
        return any(c["attempts"] for c in await contacts())

    assert (await product.request("POST", f"/api/campaigns/{cid}/start"))[0] == 200
    await _until("the first dial", first_dialled, 30, product)
    # one callee at a time on the trunk's address: hold the campaign until the next callee is up
    assert (await product.request("POST", f"/api/campaigns/{cid}/pause"))[0] == 200
    assert await asyncio.to_thread(busy.wait_exit, timeout=30) == 0, busy.describe()
    answering = sip_callee("uas_answer_hangup.xml", answer_after_ms=6000, play=speech_ulaw_wav())
    assert (await product.request("POST", f"/api/campaigns/{cid}/resume"))[0] == 200

    async def completed() -> dict | None:
        status, campaign = await product.request("GET", f"/api/campaigns/{cid}")
        return campaign if status == 200 and campaign["status"] == "completed" else None

    campaign = await _until("the campaign completed", completed, 90, product)
    assert await asyncio.to_thread(answering.wait_exit, timeout=30) == 0, answering.describe()
    assert (campaign["progress"]["busy"], campaign["progress"]["completed"]) == (1, 1), campaign["progress"]
    by_number = {c["phone_number"]: c for c in await contacts()}
    [first] = by_number[NUMBERS[0]]["attempts"]
    [second] = by_number[NUMBERS[1]]["attempts"]
    assert (first["status"], first["sip_status_code"]) == ("busy", 486), first
    assert second["status"] == "completed" and second["session_id"], second

    # the answered call ran the agent under the campaign's name; once its analysis is stored (the last usage it
    # records), the campaign's cost is the ledger's for its calls
    session = await product.wait_session(
        second["session_id"],
        "alice",
        lambda s: s["analysisStatus"] in ("completed", "failed", "skipped"),
        timeout=60,
        what="analysed",
    )
    assert session["campaign"] == "sip-reminders" and session["direction"] == "outbound"
    totals = []
    for attempt in (first, second):
        if attempt["session_id"]:
            status, breakdown = await product.request("GET", f"/api/sessions/{attempt['session_id']}/cost-breakdown")
            assert status == 200, breakdown
            totals.append(breakdown["total_cost_nanos"])
    status, campaign = await product.request("GET", f"/api/campaigns/{cid}")
    assert campaign["costs"]["total_cost_nanos"] == sum(totals) > 0, (campaign["costs"], totals)
    assert campaign["costs"]["by_outcome"].keys() <= {"busy", "completed"}
