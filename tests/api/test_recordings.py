"""Call recordings through the API: the agents' recording fields, GET (whole and Range) and DELETE of a session's
recording, its owner only, and the retention sweep (core/recordings.py) on a real store and a real directory."""

from __future__ import annotations

import asyncio
import os
import re
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pytest

from core.recordings import LocalRecordings, recording_key, sweep_expired
from core.store import sessions as repo
from core.store.timefmt import to_iso
from tests.api.seed import AGENT_WIRE as AGENT
from tests.api.seed import seed_call, tenant_of
from tests.conftest import assert_error

AUDIO = bytes(range(256)) * 40  # 10,240 bytes, each position telling its offset apart


def _recorded(store, settings, owner: str, *, ended_at: str = "2026-01-10T10:01:05.400000Z") -> tuple[str, str]:
    """A call of `owner` with a recording of AUDIO in the data dir; returns (session id, key)."""
    _, sid = seed_call(store, owner, ended_at=ended_at)
    key = recording_key(tenant_of(owner), sid)
    LocalRecordings.in_data_dir(settings.data_dir).writing_path(key).write_bytes(AUDIO)
    store.write_sync(lambda db: repo.start_recording(db, sid, key))
    store.write_sync(lambda db: repo.finish_recording(db, sid, duration_ms=65_400, size=len(AUDIO)))
    return sid, key


async def test_an_agent_keeps_its_recording_setting_and_notice_and_leaves_the_default_when_unset(client, auth):
    h = auth("alice")
    created = await (
        await client.post(
            "/api/agents",
            json={**AGENT, "recordingEnabled": True, "recordingNotice": "This call is recorded."},
            headers=h,
        )
    ).json()
    assert created["recordingEnabled"] is True and created["recordingNotice"] == "This call is recorded."
    plain = await (await client.post("/api/agents", json=AGENT, headers=h)).json()
    assert plain["recordingEnabled"] is None and plain["recordingNotice"] is None
    changed = await (
        await client.patch(f"/api/agents/{created['id']}", json={"recordingEnabled": False}, headers=h)
    ).json()
    assert changed["recordingEnabled"] is False and changed["recordingNotice"] == "This call is recorded."


@pytest.mark.parametrize(
    ("field", "bad"),
    [("recordingNotice", ""), ("recordingNotice", "x" * 2_001), ("recordingNotice", 7), ("recordingEnabled", "maybe")],
)
async def test_a_bad_recording_field_is_a_422(client, auth, field, bad):
    body = await assert_error(
        await client.post("/api/agents", json={**AGENT, field: bad}, headers=auth("alice")), 422, "validation_error"
    )
    assert field in str(body)


async def test_the_session_names_its_recording_and_serves_it_whole(client, auth, store, settings):
    sid, _ = _recorded(store, settings, "alice")
    s = await (await client.get(f"/api/sessions/{sid}", headers=auth("alice"))).json()
    assert s["recordingUrl"] == f"/api/sessions/{sid}/recording" and s["recordingDuration"] == 65.4
    resp = await client.get(s["recordingUrl"], headers=auth("alice"))
    assert resp.status == 200 and resp.headers["Content-Type"] == "audio/ogg"
    assert resp.headers["Accept-Ranges"] == "bytes"
    assert await resp.read() == AUDIO


@pytest.mark.parametrize(
    ("header", "start", "end"),
    [("bytes=100-199", 100, 199), ("bytes=10000-", 10_000, 10_239), ("bytes=-40", 10_200, 10_239)],
)
async def test_a_range_request_gets_exactly_those_bytes_as_206(client, auth, store, settings, header, start, end):
    sid, _ = _recorded(store, settings, "alice")
    resp = await client.get(f"/api/sessions/{sid}/recording", headers={**auth("alice"), "Range": header})
    assert resp.status == 206
    assert resp.headers["Content-Range"] == f"bytes {start}-{end}/{len(AUDIO)}"
    assert await resp.read() == AUDIO[start : end + 1]


async def test_a_range_past_the_end_is_416(client, auth, store, settings):
    sid, _ = _recorded(store, settings, "alice")
    resp = await client.get(f"/api/sessions/{sid}/recording", headers={**auth("alice"), "Range": "bytes=20000-"})
    assert resp.status == 416


async def test_another_tenants_recording_is_a_404_to_get_and_to_delete(client, auth, store, settings):
    sid, key = _recorded(store, settings, "alice")
    await assert_error(await client.get(f"/api/sessions/{sid}/recording", headers=auth("bob")), 404)
    await assert_error(await client.delete(f"/api/sessions/{sid}/recording", headers=auth("bob")), 404)
    assert LocalRecordings.in_data_dir(settings.data_dir).local_path(key) is not None


async def test_a_session_without_a_recording_has_none_and_its_recording_is_a_404(client, auth, store):
    _, sid = seed_call(store, "alice")
    s = await (await client.get(f"/api/sessions/{sid}", headers=auth("alice"))).json()
    assert s["recordingUrl"] is None and s["recordingDuration"] is None
    await assert_error(await client.get(f"/api/sessions/{sid}/recording", headers=auth("alice")), 404)


async def test_delete_removes_the_file_and_the_sessions_recording_fields(client, auth, store, settings):
    sid, key = _recorded(store, settings, "alice")
    resp = await client.delete(f"/api/sessions/{sid}/recording", headers=auth("alice"))
    assert resp.status == 200 and (await resp.json())["success"] is True
    assert LocalRecordings.in_data_dir(settings.data_dir).local_path(key) is None
    s = await (await client.get(f"/api/sessions/{sid}", headers=auth("alice"))).json()
    assert s["recordingUrl"] is None and s["recordingDuration"] is None
    await assert_error(await client.delete(f"/api/sessions/{sid}/recording", headers=auth("alice")), 404)
    await assert_error(await client.get(f"/api/sessions/{sid}/recording", headers=auth("alice")), 404)


async def test_retention_deletes_only_recordings_of_calls_that_ended_before_it(store, settings, caplog):
    old, old_key = _recorded(store, settings, "alice", ended_at="2026-01-10T10:01:05.400000Z")
    recent_end = to_iso(datetime.now(UTC) - timedelta(days=29))  # inside the 30 days
    recent, recent_key = _recorded(store, settings, "bob", ended_at=recent_end)
    storage = LocalRecordings.in_data_dir(settings.data_dir)
    assert await sweep_expired(store, storage, retention_days=0) == []  # 0: kept forever
    caplog.set_level("INFO", logger="voxarena.recordings")
    assert await sweep_expired(store, storage, retention_days=30) == [old]
    assert storage.local_path(old_key) is None and storage.local_path(recent_key) is not None
    assert store.read_sync(lambda db: repo.get_row(db, old))["recording_key"] is None
    assert store.read_sync(lambda db: repo.get_row(db, recent))["recording_key"] == recent_key
    assert any(old in r.getMessage() and "30 days" in r.getMessage() for r in caplog.records)
    assert await sweep_expired(store, storage, retention_days=30) == []  # nothing left to sweep
    assert os.path.exists(storage.root / recent_key)


async def test_recording_minutes_are_a_storage_minutes_line_of_the_ledger_priced_when_a_rate_is_set(
    client, auth, store, tmp_path
):
    import yaml

    from pipelines.metering import CallMeter
    from pipelines.pricing import PriceBook
    from worker.usage_sink import StoreUsageSink

    spec = yaml.safe_load((Path(__file__).resolve().parents[2] / "pricing.yaml").read_text())
    spec["prices"].append(
        {
            "provider": "local",
            "event_type": "storage_minutes",
            "model": "*",
            "unit": "minute",
            "rate": "0.0010",
            "effective_from": "2025-01-01",
        }
    )
    priced = tmp_path / "pricing.yaml"
    priced.write_text(yaml.safe_dump(spec))
    costs = {}
    for book in (PriceBook.load(), PriceBook.load(priced)):  # the shipped zero rate, then a rate of one's own
        agent_id, sid = seed_call(store, "alice")
        meter = CallMeter(
            book,
            StoreUsageSink(store, spill_file=tmp_path / f"{sid}.spill"),
            owner_id=tenant_of("alice"),
            session_id=sid,
            agent_id=agent_id,
            key_scope=f"{sid}/job",
        )
        await meter.record_storage_minutes(storage="local", recorded_ms=65_400)
        await meter.record_storage_minutes(storage="local", recorded_ms=65_400)  # a retry: the same line
        body = await (await client.get(f"/api/sessions/{sid}/cost-breakdown", headers=auth("alice"))).json()
        (event,) = body["events"]
        assert event["event_type"] == "storage_minutes" and event["provider"] == "local", event
        assert Decimal(str(event["quantity"])) == Decimal("1.09") and event["unit"] == "minute"
        costs[len(costs)] = body["total_cost_nanos"]
    assert costs == {0: 0, 1: 1_090_000}  # 1.09 min at $0.001 = $0.00109, exact in nanos


async def test_the_api_sweeps_expired_recordings_on_start_when_retention_is_set(settings, store, dns_server):
    from aiohttp.test_utils import TestClient, TestServer

    from api.app import create_app

    old, old_key = _recorded(store, settings, "alice", ended_at="2026-01-10T10:01:05.400000Z")
    recent, recent_key = _recorded(store, settings, "bob", ended_at=to_iso(datetime.now(UTC) - timedelta(days=1)))
    storage = LocalRecordings.in_data_dir(settings.data_dir)
    app = create_app(settings.with_(recording_retention_days=7), store=store, net_lookup=dns_server.lookup)
    async with TestClient(TestServer(app, host="127.0.0.1")):
        deadline = asyncio.get_running_loop().time() + 10
        # the file goes first, then the session's fields: both, while the app (and its sweeper) runs (CI on
        # PostgreSQL: the app was stopped between the two, and the write was cancelled; the next sweep would mend it)
        while (
            storage.local_path(old_key) is not None
            or store.read_sync(lambda db: repo.get_row(db, old))["recording_key"] is not None
        ):
            assert asyncio.get_running_loop().time() < deadline, "the sweeper did not delete the old recording"
            await asyncio.sleep(0.05)
    assert storage.local_path(recent_key) is not None
    assert store.read_sync(lambda db: repo.get_row(db, recent))["recording_key"] == recent_key


@pytest.mark.parametrize(
    ("env", "says"),
    [
        ({"VOXARENA_RECORDINGS_URL": "https://bucket/x"}, "must be s3://BUCKET/PREFIX"),
        ({"VOXARENA_RECORDINGS_URL": "s3://Calls_Bucket/x"}, "'Calls_Bucket' is not an S3 bucket name"),
        ({"VOXARENA_RECORDINGS_URL": "s3://ab"}, "'ab' is not an S3 bucket name"),
        ({"VOXARENA_RECORDINGS_URL": "s3://calls/a b"}, "the prefix 'a b'"),
        (
            {"VOXARENA_RECORDINGS_URL": "s3://calls/x", "VOXARENA_RECORDINGS_S3_ENDPOINT": "127.0.0.1:8333"},
            "RECORDINGS_S3_ENDPOINT must be an http:// or https:// URL",
        ),
        (
            {"VOXARENA_RECORDINGS_URL": "s3://calls/x", "VOXARENA_RECORDINGS_S3_ACCESS_KEY_ID": "AKIDEXAMPLE"},
            "RECORDINGS_S3_ACCESS_KEY_ID and VOXARENA_RECORDINGS_S3_SECRET_ACCESS_KEY go together",
        ),
        ({"VOXARENA_RECORDINGS_S3_ENDPOINT": "http://127.0.0.1:8333"}, "need VOXARENA_RECORDINGS_URL"),
    ],
)
def test_a_bad_recordings_storage_setting_is_refused_with_what_is_wrong(env, says):
    from core.settings import Settings

    with pytest.raises(ValueError, match=re.escape(says)):
        Settings.from_env(env)


def test_the_recordings_url_chooses_the_storage_and_its_prefix(tmp_path):
    from core.recordings import storage_for
    from core.recordings_s3 import S3Recordings
    from core.settings import Settings

    assert isinstance(storage_for(Settings(data_dir=tmp_path)), LocalRecordings)
    s3 = storage_for(Settings(data_dir=tmp_path, recordings_url="s3://acme-calls/voxarena/rec/"))
    assert isinstance(s3, S3Recordings) and s3.name == "s3"
    assert (s3.bucket, s3.object_key("ten_a/b.ogg")) == ("acme-calls", "voxarena/rec/ten_a/b.ogg")
    assert s3.writing_path("ten_a/b.ogg") == tmp_path / "recordings-pending" / "ten_a" / "b.ogg"
    bare = storage_for(Settings(data_dir=tmp_path, recordings_url="s3://acme-calls"))
    assert isinstance(bare, S3Recordings) and bare.object_key("ten_a/b.ogg") == "ten_a/b.ogg"
    secret = Settings(
        recordings_url="s3://a-b-c", recordings_s3_access_key_id="k", recordings_s3_secret_access_key="s3cr3t"
    )
    assert "s3cr3t" not in repr(secret)


@pytest.mark.parametrize(
    ("header", "parsed"),
    [
        ("bytes=0-99", (0, 99)),
        ("bytes=100-", (100, None)),
        ("bytes=-40", (None, 40)),
        (None, None),
        ("bytes=5-2", None),  # not satisfiable as written: the whole recording, as RFC 9110 allows
        ("bytes=0-1,5-6", None),  # several ranges: the whole recording
        ("items=0-1", None),
        ("bytes=-", None),
        ("bytes=-0", None),
    ],
)
def test_a_range_header_is_one_byte_range_or_none(header, parsed):
    from core.recordings import ByteRange

    got = ByteRange.parse(header)
    assert (None if got is None else (got.first, got.last)) == parsed
    if got is not None:
        assert got.header() == header


async def test_object_storage_that_does_not_answer_is_a_503_and_the_session_keeps_its_recording(
    settings, store, dns_server, token_for
):
    from aiohttp.test_utils import TestClient, TestServer

    from api.app import create_app
    from tests.harness.procs import free_port

    nobody = settings.with_(
        recordings_url="s3://vx-recordings/calls",
        recordings_s3_endpoint=f"http://127.0.0.1:{free_port('127.0.0.1')}",  # nothing listens there
        recordings_s3_access_key_id="vx-test",
        recordings_s3_secret_access_key="vx-test-secret",
    )
    _, sid = seed_call(store, "alice")
    key = recording_key(tenant_of("alice"), sid)
    store.write_sync(lambda db: repo.start_recording(db, sid, key))
    store.write_sync(lambda db: repo.finish_recording(db, sid, duration_ms=1_000, size=10))
    headers = {"Authorization": f"Bearer {token_for('alice')}"}
    app = create_app(nobody, store=store, net_lookup=dns_server.lookup)
    async with TestClient(TestServer(app, host="127.0.0.1")) as c:
        body = await assert_error(await c.get(f"/api/sessions/{sid}/recording", headers=headers), 503)
        assert body["detail"] == "object storage failed reading the recording: the store could not be reached"
        resp = await c.delete(f"/api/sessions/{sid}/recording", headers=headers)
        await assert_error(resp, 503, "service_unavailable")
        assert resp.headers["Retry-After"] == "5"
    assert store.read_sync(lambda db: repo.get_row(db, sid))["recording_key"] == key
