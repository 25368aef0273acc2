from __future__ import annotations

import pytest

from api.schemas.sessions import TranscriptItem
from api.services.transcripts import TranscriptCache
from core.store import sessions as repo
from core.store.timefmt import now_iso
from tests.api.seed import ANALYSIS, seed_call
from tests.conftest import assert_error

SESSION_KEYS = {
    "id",
    "agentId",
    "startedAt",
    "endedAt",
    "transcript",
    "duration",
    "analysis",
    "direction",
    "call_direction",
    "outbound_phone_number",
    "call_status",
}


async def test_session_serves_transcript_duration_and_embedded_analysis(client, auth, store):
    _, sid = seed_call(store, "alice", analysis=ANALYSIS, turns=2)
    s = await (await client.get(f"/api/sessions/{sid}", headers=auth("alice"))).json()
    assert s.keys() >= SESSION_KEYS
    assert s["duration"] == 65  # 65.4 s in whole seconds
    assert s["endedAt"] == "2026-01-10T10:01:05.400000Z"
    assert [t["speaker"] for t in s["transcript"]] == ["USER", "AGENT", "USER", "AGENT"]
    assert s["transcript"][1]["metrics"]["e2e_latency"] == 0.7
    assert s["analysis"] == ANALYSIS and s["analysisStatus"] == "completed"
    assert s["direction"] == "inbound" and s["call_direction"] == "INBOUND"
    assert await (await client.get(f"/api/sessions/{sid}/analysis", headers=auth("alice"))).json() == ANALYSIS
    items = await (await client.get(f"/api/sessions/{sid}/transcripts/", headers=auth("alice"))).json()
    assert items == s["transcript"]


async def test_analysis_is_null_until_it_exists_and_when_it_failed(client, auth, store):
    _, sid = seed_call(store, "alice")
    resp = await client.get(f"/api/sessions/{sid}/analysis", headers=auth("alice"))
    assert resp.status == 200 and await resp.json() is None
    store.write_sync(
        lambda db: repo.store_analysis(db, sid, result=None, error="model returned invalid JSON twice", attempts=2)
    )
    assert await (await client.get(f"/api/sessions/{sid}/analysis", headers=auth("alice"))).json() is None
    s = await (await client.get(f"/api/sessions/{sid}", headers=auth("alice"))).json()
    assert s["analysisStatus"] == "failed" and "invalid JSON" in s["analysisError"]


async def test_list_pages_filters_by_date_and_direction(client, auth, store):
    agent_id, _ = seed_call(store, "alice", started_at="2026-01-01T09:00:00.000000Z", ended_at=None)
    for day in range(2, 8):
        seed_call(
            store,
            "alice",
            agent_id=agent_id,
            started_at=f"2026-01-0{day}T09:00:00.000000Z",
            direction="outbound" if day % 2 else "inbound",
        )
    seed_call(store, "bob")
    h = auth("alice")
    page1 = await (await client.get("/api/sessions?limit=3", headers=h)).json()
    assert page1["total"] == 7 and len(page1["sessions"]) == 3
    assert [s["startedAt"][:10] for s in page1["sessions"]] == ["2026-01-07", "2026-01-06", "2026-01-05"]
    page3 = await (await client.get("/api/sessions?limit=3&page=3", headers=h)).json()
    assert [s["startedAt"][:10] for s in page3["sessions"]] == ["2026-01-01"]
    assert page3["sessions"][0]["endedAt"] is None and page3["sessions"][0]["duration"] is None
    ranged = await (await client.get("/api/sessions?start_date=2026-01-03&end_date=2026-01-05", headers=h)).json()
    assert sorted(s["startedAt"][:10] for s in ranged["sessions"]) == ["2026-01-03", "2026-01-04", "2026-01-05"]
    precise = await (
        await client.get("/api/sessions?start_date=2026-01-03T09:00:00Z&end_date=2026-01-04T08:59:59Z", headers=h)
    ).json()
    assert [s["startedAt"][:10] for s in precise["sessions"]] == ["2026-01-03"]
    out = await (await client.get("/api/sessions?direction=OUTBOUND", headers=h)).json()
    assert out["total"] == 3 and {s["call_direction"] for s in out["sessions"]} == {"OUTBOUND"}
    beyond = await (await client.get("/api/sessions?page=99", headers=h)).json()
    assert beyond == {"sessions": [], "total": 7}


@pytest.fixture
def transcript_reads(monkeypatch) -> list[set[str]]:
    """The session ids of each read of transcript items, in order."""
    read: list[set[str]] = []
    real = repo.transcripts

    def transcripts(db, ids):
        read.append(set(ids))
        return real(db, ids)

    monkeypatch.setattr(repo, "transcripts", transcripts)
    return read


async def test_the_list_keeps_the_transcripts_it_read_and_shows_each_new_item(client, auth, store, transcript_reads):
    _, sid = seed_call(store, "alice", turns=2, ended_at=None)
    _, ended = seed_call(store, "alice", turns=1, started_at="2026-01-09T10:00:00.000000Z")
    read = transcript_reads
    h = auth("alice")
    first = await (await client.get("/api/sessions", headers=h)).json()
    again = await (await client.get("/api/sessions", headers=h)).json()
    assert again == first and read == [{sid, ended}, set()]  # the second read read no items
    assert [len(s["transcript"]) for s in first["sessions"]] == [4, 2]

    # the live call says one more thing: the next read shows it, and reads only that call's items again
    store.write_sync(
        lambda db: repo.append_item(
            db, session_id=sid, item_key="u9", speaker="USER", content="one more", timestamp=now_iso()
        )
    )
    later = await (await client.get("/api/sessions", headers=h)).json()
    assert read[-1] == {sid}
    assert [t["content"] for t in later["sessions"][0]["transcript"]][-1] == "one more"
    assert later["sessions"][0] == await (await client.get(f"/api/sessions/{sid}", headers=h)).json()
    assert later["sessions"][1] == first["sessions"][1]
    assert read[-1] == set()  # the session's own read found the transcript the list kept


async def test_a_session_read_again_keeps_its_transcript_and_shows_each_new_item(client, auth, store, transcript_reads):
    _, sid = seed_call(store, "alice", turns=2, ended_at=None)
    read = transcript_reads
    h = auth("alice")
    first = await (await client.get(f"/api/sessions/{sid}", headers=h)).json()
    again = await (await client.get(f"/api/sessions/{sid}", headers=h)).json()
    assert again == first and read == [{sid}, set()] and len(first["transcript"]) == 4
    store.write_sync(
        lambda db: repo.append_item(
            db, session_id=sid, item_key="u9", speaker="USER", content="one more", timestamp=now_iso()
        )
    )
    later = await (await client.get(f"/api/sessions/{sid}", headers=h)).json()
    assert read[-1] == {sid} and [t["content"] for t in later["transcript"]][-1] == "one more"
    assert {k: v for k, v in later.items() if k != "transcript"} == {
        k: v for k, v in first.items() if k != "transcript"
    }
    # the list finds it kept
    listed = await (await client.get("/api/sessions", headers=h)).json()
    assert read[-1] == set() and listed["sessions"][0] == later


def test_the_transcript_cache_keeps_the_newest_version_within_its_items():
    item = TranscriptItem(speaker="USER", content="hi", timestamp="2026-01-10T10:00:00Z")
    cache = TranscriptCache(max_items=12)
    cache.put("a", (2, 10), [item] * 2)
    assert cache.get("a", (2, 10)) == [item] * 2 and cache.get("a", (3, 11)) is None
    cache.put("a", (3, 11), [item] * 3)  # a newer version replaces the older
    assert cache.get("a", (2, 10)) is None and cache.items == 3
    cache.put("b", (2, 5), [item] * 2)
    cache.get("a", (3, 11))  # a used last: b goes first
    cache.put("c", (3, 6), [item] * 3)
    cache.put("d", (3, 7), [item] * 3)
    cache.put("f", (2, 9), [item] * 2)  # 13 items: over the budget
    assert cache.get("b", (2, 5)) is None and cache.get("a", (3, 11)) is not None
    assert cache.items == 11 and len(cache) == 4
    cache.put("e", (4, 8), [item] * 4)  # over a quarter of the budget: not kept
    assert cache.get("e", (4, 8)) is None and cache.items == 11


async def test_dashboard_metrics_count_only_the_callers_data(client, auth, store):
    today = now_iso()
    agent_id, _ = seed_call(store, "alice", started_at=today, ended_at=None)
    seed_call(store, "alice", agent_id=agent_id, started_at=today, ended_at=None, turns=0)
    seed_call(store, "alice", agent_id=agent_id)  # 65.4 s, long ago
    seed_call(store, "bob", started_at=today)
    m = await (await client.get("/api/dashboard/metrics", headers=auth("alice"))).json()
    assert m == {
        "totalSessions": 3,
        "totalAgents": 1,
        "avgDuration": 65.4,
        "sessionsToday": 2,
        "transcriptsToday": 1,
        "totalCost": 0.0,
        "costToday": 0.0,
        "costThisMonth": 0.0,
    }


async def test_unknown_session_is_404(client, auth):
    for path in ("/api/sessions/nope", "/api/sessions/nope/analysis", "/api/sessions/nope/transcripts"):
        await assert_error(await client.get(path, headers=auth("alice")), 404, "not_found")
