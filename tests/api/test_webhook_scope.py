"""A LiveKit webhook speaks only for the calls of the server whose key signed it (issue 23): a tenant holding its own
client's LiveKit key can sign any event for any room, so an event for a call on another server (another tenant's
client, or the product's own) is acknowledged and changes nothing, whatever its type; the right server's own does."""

from __future__ import annotations

import base64
import hashlib
import json
import uuid

import pytest
from livekit import api as lk

from core.secrets import SecretBox
from core.store import clients as clients_repo
from core.store import dispatch as dispatch_repo
from core.store import sessions as sessions_repo
from tests.api.seed import seed_agent, tenant_of
from tests.conftest import LIVEKIT_KEY, LIVEKIT_SECRET, db_rows, table_snapshot

A_KEY, A_SECRET = "tenant-a-livekit-key", "tenant-a-livekit-secret-long-enough-0000"
B_KEY, B_SECRET = "tenant-b-livekit-key", "tenant-b-livekit-secret-long-enough-0000"
# every event that changes a session: ends it (room_finished), starts its dispatch clock (a caller joined), keeps
# it from the orphan sweeper (any participant or track activity)
STATEFUL_EVENTS = ("room_finished", "participant_joined", "participant_left", "track_published")


def _client(store, settings, user: str, client_id: str, key: str, secret: str) -> None:
    box = SecretBox.from_settings(settings.secret_key, settings.data_dir)
    store.write_sync(
        lambda db: clients_repo.create(
            db,
            tenant_of(user),
            {
                "id": client_id,
                "name": client_id,
                "settings": {"livekit": {"server_url": "wss://lk.example.com", "api_key": key}},
                "secrets": box.seal(json.dumps({"livekit": {"api_secret": secret}})),
            },
        )
    )


def _call(store, user: str, room: str, *, client_id: str | None, active: bool) -> str:
    agent = seed_agent(store, user, clientId=client_id) if client_id else seed_agent(store, user)

    def create(db) -> str:
        sid = sessions_repo.create(
            db,
            owner_id=tenant_of(user),
            agent_id=agent["id"],
            room_name=room,
            client_id=client_id,
            status="active" if active else "pending",
            started_at="2026-01-01T00:00:00.000000Z" if active else None,
        )
        db.execute("UPDATE sessions SET last_activity_at = ? WHERE id = ?", ["2026-01-01T00:00:00.000000Z", sid])
        if not active:
            dispatch_repo.record_dispatch(db, sid, "AD_1", at="2026-01-01T00:00:00.000000Z")
        return sid

    return store.write_sync(create)


@pytest.fixture
def calls(store, settings) -> dict[str, str]:
    """Alice's live and waiting calls on her client's server, her call on the product's, and bob's client;
    bob's second client claims alice's key name with bob's own secret."""
    _client(store, settings, "alice", "a-site", A_KEY, A_SECRET)
    _client(store, settings, "bob", "b-site", B_KEY, B_SECRET)
    _client(store, settings, "bob", "b-lookalike", A_KEY, B_SECRET)
    return {
        "a-live": _call(store, "alice", "a-live", client_id="a-site", active=True),
        "a-pending": _call(store, "alice", "a-pending", client_id="a-site", active=False),
        "p-live": _call(store, "alice", "p-live", client_id=None, active=True),
    }


def _webhook(event: str, room: str, key: str, secret: str) -> tuple[str, dict]:
    body = {"event": event, "room": {"name": room}, "id": f"EV_{uuid.uuid4().hex}", "createdAt": "1767225660"}
    if event.startswith("participant") or event == "track_published":
        body["participant"] = {"identity": "caller", "kind": 0}  # STANDARD: a caller, not an agent
    raw = json.dumps(body)
    digest = base64.b64encode(hashlib.sha256(raw.encode()).digest()).decode()
    return raw, {"Authorization": lk.AccessToken(key, secret).with_sha256(digest).to_jwt()}


def _rows(settings) -> list[dict]:
    return db_rows(settings, "SELECT * FROM sessions")


def _status(settings, sid: str) -> tuple:
    (row,) = [r for r in _rows(settings) if r["id"] == sid]
    return row["status"], row["end_reason"]


def _sessions(settings) -> list[tuple]:
    return table_snapshot(settings)["sessions"]


@pytest.mark.parametrize("event", STATEFUL_EVENTS)
async def test_a_webhook_signed_with_another_servers_key_is_acknowledged_and_changes_no_call(
    client, settings, calls, event, caplog
):
    before = _sessions(settings)
    # bob's own key; bob's secret under alice's key name; the product's key for calls on a client's server
    for key, secret, rooms in (
        (B_KEY, B_SECRET, ("a-live", "a-pending", "p-live")),
        (A_KEY, B_SECRET, ("a-live", "a-pending", "p-live")),
        (LIVEKIT_KEY, LIVEKIT_SECRET, ("a-live", "a-pending")),
    ):
        for room in rooms:
            raw, headers = _webhook(event, room, key, secret)
            resp = await client.post("/api/livekit/webhook", data=raw, headers=headers)
            assert resp.status == 200 and (await resp.json())["received"] is True, (key, room)
    assert _sessions(settings) == before
    assert f"webhook {event} EV_" in caplog.text and "run on another LiveKit server" in caplog.text


async def test_the_servers_own_key_ends_its_calls_live_and_waiting(client, settings, calls):
    for room, key, secret in (
        ("a-live", A_KEY, A_SECRET),
        ("a-pending", A_KEY, A_SECRET),
        ("p-live", LIVEKIT_KEY, LIVEKIT_SECRET),
    ):
        raw, headers = _webhook("room_finished", room, key, secret)
        assert (await client.post("/api/livekit/webhook", data=raw, headers=headers)).status == 200
    ended = {sid: _status(settings, sid) for sid in calls.values()}
    assert ended[calls["a-live"]] == ("ended", "room_finished")
    assert ended[calls["a-pending"]] == ("ended", "no_agent_available")
    assert ended[calls["p-live"]] == ("ended", "room_finished")


async def test_the_servers_own_key_marks_its_caller_joined_and_its_calls_active(client, settings, calls):
    raw, headers = _webhook("participant_joined", "a-pending", A_KEY, A_SECRET)
    assert (await client.post("/api/livekit/webhook", data=raw, headers=headers)).status == 200
    raw, headers = _webhook("track_published", "a-live", A_KEY, A_SECRET)
    assert (await client.post("/api/livekit/webhook", data=raw, headers=headers)).status == 200
    rows = {r["id"]: r for r in _rows(settings)}
    assert rows[calls["a-pending"]]["caller_joined_at"] == "2026-01-01T00:01:00.000000Z"
    assert rows[calls["a-live"]]["last_activity_at"] > "2026-01-01T00:00:00.000000Z"
    assert rows[calls["p-live"]]["last_activity_at"] == "2026-01-01T00:00:00.000000Z"
