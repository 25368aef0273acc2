"""A campaign over real SIP (livekit-sip, one sipp serving every callee at once, tests/sip/uas_by_number.xml): ten
contacts, three calls at a time, dialled by the product's own dialer on the outbound path. The callees answer and
talk, are busy (486) or never answer (the ring timeout) by their number; busy and unanswered ones are retried after
the policy's backoff; nothing is dialled before the schedule's window opens; a pause holds every new dial while the
calls in flight end and are counted; a restart of the product with calls in flight dials no contact again; and the
campaign ends with counts that are the callee's own (sipp's INVITEs per number) and costs that are the ledger's."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import aiohttp

from api.services.dialer import DAYS
from tests.harness.audio import speech_ulaw_wav
from tests.harness.product import Product
from tests.harness.sip import SipDialog, SippCallee, max_concurrent

# what each callee does is its number's last digit (uas_by_number.xml): 8 busy, 9 no answer, else it answers;
# listed in the order they are dialled
CONTACTS = {
    "+14155550100": "completed",
    "+14155550101": "completed",
    "+14155550102": "completed",
    "+14155550118": "busy",
    "+14155550119": "no_answer",
    "+14155550103": "completed",
    "+14155550128": "busy",
    "+14155550129": "no_answer",
    "+14155550104": "completed",
    "+14155550105": "completed",
}
SIP_FINAL = {"completed": 200, "busy": 486, "no_answer": 487}  # 487: the callee's answer to livekit-sip's CANCEL
MAX_CONCURRENT = 3
MAX_ATTEMPTS, BACKOFF_SECONDS = 2, 30  # 30 s: the API's least backoff
RETRY = {"max_attempts": MAX_ATTEMPTS, "on": ["busy", "no_answer"], "backoff_seconds": BACKOFF_SECONDS}
ATTEMPTS = {"completed": 1, "busy": MAX_ATTEMPTS, "no_answer": MAX_ATTEMPTS}


async def _until(what: str, check, timeout: float, product, callee: SippCallee | None = None) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if result := await check():
            return result
        await asyncio.sleep(0.25)
    calls = (
        "\n".join(
            f"  {d.number} {d.final_status} invited {d.invited_at:.1f} ended {d.ended_at}" for d in callee.dialogs()
        )
        if callee is not None
        else ""
    )
    raise AssertionError(
        f"{what} not reached in {timeout:.0f}s\n--- the callees' calls ---\n{calls}\n"
        f"--- product log ---\n{product.log_tail(120)}"
    )


def _epoch(iso: str) -> float:
    return datetime.fromisoformat(iso).timestamp()


def _window_a_minute_ahead(now: datetime) -> tuple[float, dict]:
    """The schedule of a window opening at the next minute boundary at least 60 s away, in a zone where that is
    12:MM (a two-hour window that never crosses midnight); returns (when it opens, the schedule)."""
    later = now + timedelta(seconds=60)
    opens = later.replace(second=0, microsecond=0)
    if opens < later:
        opens += timedelta(minutes=1)
    offset = 12 - opens.hour
    zone = "Etc/GMT" if offset == 0 else f"Etc/GMT{-offset:+d}"  # POSIX signs: Etc/GMT-5 is UTC+5
    local = opens.astimezone(ZoneInfo(zone))
    schedule = {
        "timezone": zone,
        "days": [DAYS[local.weekday()]],
        "start": local.strftime("%H:%M"),
        "end": (local + timedelta(hours=2)).strftime("%H:%M"),
    }
    return opens.timestamp(), schedule


@dataclass
class Watch:
    """The campaign as the product reports it, sampled every 0.2 s through the whole test (nothing while the
    product restarts): its status and how many of its contacts are in flight."""

    product: Product
    campaign_id: str
    samples: list[tuple[float, str, dict]] = field(default_factory=list)  # (time.time(), status, progress)
    task: asyncio.Task | None = None

    def start(self) -> None:
        self.task = asyncio.create_task(self._run(), name="campaign-watch")

    async def stop(self) -> None:
        if self.task is not None:
            self.task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self.task

    async def _run(self) -> None:
        while True:
            try:
                status, campaign = await self.product.request("GET", f"/api/campaigns/{self.campaign_id}")
            except (aiohttp.ClientError, OSError, TimeoutError):
                status = 0  # the product is restarting
            if status == 200:
                self.samples.append((time.time(), campaign["status"], campaign["progress"]))
            await asyncio.sleep(0.2)

    def in_flight(self) -> list[int]:
        return [p["in_progress"] for _, _, p in self.samples]


def _open_answered(callee: SippCallee, since: float = 0.0) -> list[SipDialog]:
    """The callee's answered calls still up, of those that began after `since`."""
    return [d for d in callee.dialogs() if d.answered and d.ended_at is None and d.invited_at > since]


async def test_a_campaign_of_ten_keeps_three_in_flight_retries_pauses_and_survives_a_restart(sip_product, sip_callee):
    product = sip_product
    callee: SippCallee = sip_callee(
        "uas_by_number.xml", answer_after_ms=300, calls=None, stream=speech_ulaw_wav(), timeout_s=900
    )
    agent_id = await product.create_agent(firstMessage="Hello, this is the clinic with a reminder.")
    opens, schedule = _window_a_minute_ahead(datetime.now(UTC))
    status, made = await product.request(
        "POST",
        "/api/campaigns",
        json={
            "name": "sip-ten",
            "agent_id": agent_id,
            "contacts": [{"phone_number": n, "variables": {"customer": f"C{i}"}} for i, n in enumerate(CONTACTS)],
            "schedule": schedule,
            "max_concurrent_calls": MAX_CONCURRENT,
            "retry": RETRY,
        },
    )
    assert status == 201, made
    cid = made["id"]

    async def campaign() -> dict:
        status, body = await product.request("GET", f"/api/campaigns/{cid}")
        assert status == 200, body
        return body

    async def contacts() -> dict[str, dict]:
        status, page = await product.request("GET", f"/api/campaigns/{cid}/contacts")
        assert status == 200, page
        return {c["phone_number"]: c for c in page["contacts"]}

    async def attempts() -> int:
        return sum(len(c["attempts"]) for c in (await contacts()).values())

    assert (await product.request("POST", f"/api/campaigns/{cid}/start"))[0] == 200
    watch = Watch(product, cid)
    watch.start()
    try:
        # 1. the window: nothing before it opens, the first dials right after
        async def dialled() -> bool:
            return (await campaign())["progress"]["pending"] < len(CONTACTS)

        await _until("the first dial once the window opened", dialled, opens - time.time() + 30, product, callee)
        early = [(at, p) for at, _, p in watch.samples if at < opens and p["pending"] != len(CONTACTS)]
        assert not early, f"dialled before the window opened at {opens}: {early}"
        assert all(d.invited_at >= opens for d in callee.dialogs()), callee.describe()

        # 2. three at once (the first three callees answer: no place frees before their 10 s are up), then a
        # restart with the three calls up: SIGTERM, the calls drain, the same data dir again
        async def three_calls_up() -> bool:
            return sum(d.ended_at is None for d in callee.dialogs()) == MAX_CONCURRENT

        await _until("three calls up at once", three_calls_up, 60, product, callee)
        old_pid, stopped_at = product.process.pid, time.time()
        rc = await asyncio.to_thread(product.restart)
        restarted_at = time.time()
        assert rc == 0 and product.process.pid != old_pid, product.log_tail(80)
        up_at_stop = [d for d in callee.dialogs() if d.invited_at < stopped_at < (d.ended_at or restarted_at)]
        assert len(up_at_stop) == MAX_CONCURRENT, callee.describe()

        # 3. pause while an answered call is up: its end is counted, nothing new is dialled until resume
        async def answered_since_restart() -> bool:
            return bool(_open_answered(callee, since=restarted_at))

        await _until("an answered call after the restart", answered_since_restart, 90, product, callee)
        assert (await product.request("POST", f"/api/campaigns/{cid}/pause"))[0] == 200
        at_pause = await attempts()

        async def drained() -> dict | None:
            body = await campaign()
            return body if body["progress"]["in_progress"] == 0 else None

        # the dialer's round that settles the last call in flight is one that would have dialled, were it running
        paused = await _until("the calls in flight ended while paused", drained, 60, product, callee)
        assert paused["status"] == "paused", paused
        assert paused["progress"]["pending"] + paused["progress"]["retrying"] > 0, paused["progress"]
        assert await attempts() == at_pause
        assert len(callee.dialogs()) == at_pause, callee.describe()  # every call claimed before the pause, no more
        assert (await product.request("POST", f"/api/campaigns/{cid}/resume"))[0] == 200

        # 4. the end
        async def completed() -> dict | None:
            body = await campaign()
            return body if body["status"] == "completed" else None

        done = await _until("the campaign completed", completed, 150, product, callee)
    finally:
        await watch.stop()

    # at most three in flight, as the product counted them and as the callees' lines were busy; three reached
    assert max(watch.in_flight()) == MAX_CONCURRENT, watch.in_flight()
    dialogs = callee.dialogs()
    assert all(d.ended_at is not None for d in dialogs), callee.describe()
    assert max_concurrent(dialogs) == MAX_CONCURRENT, callee.describe()

    # every contact got its outcome, each number was dialled as often as its attempts, as the policy says, never
    # twice for one attempt (the restart included); the retry waited for the backoff; none before the window
    by_number = await contacts()
    expected = {s: sum(1 for o in CONTACTS.values() if o == s) for s in ("completed", "busy", "no_answer")}
    assert {k: v for k, v in done["progress"].items() if v} == expected, done["progress"]
    for number, outcome in CONTACTS.items():
        contact = by_number[number]
        tried = contact["attempts"]
        invites = [d for d in dialogs if d.number == number]
        assert contact["status"] == outcome, contact
        assert [a["attempt"] for a in tried] == list(range(1, ATTEMPTS[outcome] + 1)), contact
        assert [a["status"] for a in tried] == [outcome] * ATTEMPTS[outcome], contact
        assert len(invites) == len(tried), (number, invites, tried)
        assert [d.final_status for d in invites] == [SIP_FINAL[outcome]] * len(tried), invites
        if outcome == "busy":
            assert [a["sip_status_code"] for a in tried] == [486] * len(tried), tried
        for first, again in itertools.pairwise(tried):
            waited = _epoch(again["started_at"]) - _epoch(first["ended_at"])
            assert waited >= BACKOFF_SECONDS, (number, tried)
        assert all(_epoch(a["started_at"]) >= opens for a in tried), (opens, tried)
    assert len(dialogs) == sum(ATTEMPTS[o] for o in CONTACTS.values())
    # the three calls up when the product stopped were settled by the new process, never dialled again
    assert [sum(d.number == up.number for d in dialogs) for up in up_at_stop] == [1] * MAX_CONCURRENT

    # costs: once every answered call's analysis is stored (the last usage a call records), the campaign's cost is
    # the ledger's for its calls, attempt by attempt
    sessions = [(a, c) for c in by_number.values() for a in c["attempts"] if a["session_id"]]
    assert len(sessions) == len(dialogs), sessions
    for attempt, _ in sessions:
        if attempt["status"] == "completed":
            session = await product.wait_session(
                attempt["session_id"],
                "alice",
                lambda s: s["analysisStatus"] in ("completed", "failed", "skipped"),
                timeout=90,
                what="analysed",
            )
            assert session["campaign"] == "sip-ten" and session["direction"] == "outbound", session
            # the callee's speech was heard and answered, on every call of the three at once too
            speakers = {t["speaker"] for t in session["transcript"]}
            assert {"USER", "AGENT"} <= speakers, session["transcript"]
    total = 0
    for contact in (await contacts()).values():
        for attempt in contact["attempts"]:
            status, breakdown = await product.request("GET", f"/api/sessions/{attempt['session_id']}/cost-breakdown")
            assert status == 200, breakdown
            assert attempt["cost_nanos"] == breakdown["total_cost_nanos"], (attempt, breakdown)
            total += breakdown["total_cost_nanos"]
    costs = (await campaign())["costs"]
    assert costs["total_cost_nanos"] == sum(costs["by_outcome_nanos"].values()) == total > 0, (costs, total)
    assert costs["by_outcome_nanos"].keys() <= {"completed", "busy", "no_answer"}, costs
    assert costs["by_outcome_nanos"]["completed"] > 0, costs
