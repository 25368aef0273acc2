"""Call recordings kept in S3-compatible object storage (VOXARENA_RECORDINGS_URL=s3://..., core/recordings_s3.py),
against a real SeaweedFS started by the harness: the upload when a call ends (the local copy gone only after it),
the API streaming the object back (whole, a Range as 206, 416 past the end) to its owner only, DELETE and the
retention sweep removing the object, an upload to a stopped store keeping the local file with the session saying
why, and a recorded web call through the whole product."""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import secrets
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import aiohttp
import av
import numpy as np
import pytest
from aiohttp.test_utils import TestClient, TestServer

from api.app import create_app
from core.recordings import FinalizeFailed, StorageMisconfigured, recording_key, storage_for, sweep_expired
from core.recordings_s3 import S3Recordings
from core.store import sessions as repo
from core.store.timefmt import to_iso
from pipelines.pricing import PriceBook
from tests.api.seed import seed_call, tenant_of
from tests.conftest import assert_error
from tests.e2e.test_recordings import served_then_deleted
from worker.recording import CallRecording, keep_leftovers

AUDIO = bytes(range(256)) * 400  # 102,400 bytes, each position telling its offset apart


@pytest.fixture
def bucket(s3_server) -> str:
    return s3_server.bucket


@pytest.fixture
def prefix() -> str:
    """Each test's own part of the shared bucket (a bucket takes volumes of its own in SeaweedFS)."""
    return f"t{secrets.token_hex(5)}/rec"


@pytest.fixture
def s3_settings(settings, s3_server, bucket, prefix):
    return settings.with_(
        recordings_url=f"s3://{bucket}/{prefix}/",
        recordings_s3_endpoint=s3_server.endpoint,
        recordings_s3_region=s3_server.region,
        recordings_s3_access_key_id=s3_server.access_key_id,
        recordings_s3_secret_access_key=s3_server.secret_access_key,
    )


@pytest.fixture
def s3(s3_settings) -> S3Recordings:
    storage = storage_for(s3_settings)
    assert isinstance(storage, S3Recordings)
    return storage


@pytest.fixture
async def s3_client(s3_settings, store, dns_server, client):
    """The API on recordings in S3; `client`'s app (the same data dir, so the same token issuer) signs `auth`."""
    app = create_app(s3_settings, store=store, net_lookup=dns_server.lookup)
    async with TestClient(TestServer(app, host="127.0.0.1")) as c:
        yield c


async def _recorded(store, storage: S3Recordings, owner: str, *, ended_at: str = "2026-01-10T10:01:05.400000Z"):
    """A call of `owner` whose recording (AUDIO) went through the job's path: written locally, then finalized."""
    _, sid = seed_call(store, owner, ended_at=ended_at)
    key = recording_key(tenant_of(owner), sid)
    storage.writing_path(key).write_bytes(AUDIO)
    store.write_sync(lambda db: repo.start_recording(db, sid, key))
    size = await asyncio.to_thread(storage.finalize, key)
    store.write_sync(lambda db: repo.finish_recording(db, sid, duration_ms=65_400, size=size))
    return sid, key


def _object(s3_server, storage: S3Recordings, key: str) -> bytes | None:
    client = s3_server.client()
    try:
        return bytes(client.get_object(Bucket=storage.bucket, Key=storage.object_key(key))["Body"].read())
    except client.exceptions.NoSuchKey:
        return None


async def test_finalize_uploads_the_file_under_the_prefix_and_only_then_removes_the_local_copy(
    store, s3, s3_server, bucket, prefix
):
    sid, key = await _recorded(store, s3, "alice")
    assert key == f"{tenant_of('alice')}/{sid}.ogg"
    assert s3_server.objects(bucket, prefix) == {f"{prefix}/{key}": len(AUDIO)}
    assert _object(s3_server, s3, key) == AUDIO
    head = s3_server.client().head_object(Bucket=bucket, Key=f"{prefix}/{key}")
    assert head["ContentType"] == "audio/ogg"
    assert not s3.writing_path(key).exists()
    assert await s3.exists(key)


async def test_the_api_streams_the_object_whole_to_its_owner(s3_client, auth, store, s3):
    sid, _ = await _recorded(store, s3, "alice")
    s = await (await s3_client.get(f"/api/sessions/{sid}", headers=auth("alice"))).json()
    assert s["recordingUrl"] == f"/api/sessions/{sid}/recording" and s["recordingDuration"] == 65.4
    assert s["recordingError"] is None
    resp = await s3_client.get(s["recordingUrl"], headers=auth("alice"))
    assert resp.status == 200 and resp.headers["Content-Type"] == "audio/ogg"
    assert resp.headers["Accept-Ranges"] == "bytes" and resp.headers["Content-Length"] == str(len(AUDIO))
    assert await resp.read() == AUDIO


@pytest.mark.parametrize(
    ("header", "start", "end"),
    [("bytes=100-199", 100, 199), ("bytes=100000-", 100_000, 102_399), ("bytes=-40", 102_360, 102_399)],
)
async def test_a_range_request_is_passed_to_the_store_and_answered_206(s3_client, auth, store, s3, header, start, end):
    sid, _ = await _recorded(store, s3, "alice")
    resp = await s3_client.get(f"/api/sessions/{sid}/recording", headers={**auth("alice"), "Range": header})
    assert resp.status == 206
    assert resp.headers["Content-Range"] == f"bytes {start}-{end}/{len(AUDIO)}"
    assert await resp.read() == AUDIO[start : end + 1]


async def test_a_range_past_the_end_is_416_in_the_one_error_body(s3_client, auth, store, s3):
    sid, _ = await _recorded(store, s3, "alice")
    resp = await s3_client.get(f"/api/sessions/{sid}/recording", headers={**auth("alice"), "Range": "bytes=200000-"})
    await assert_error(resp, 416)


async def test_another_tenant_gets_a_404_to_get_and_to_delete_and_the_object_stays(
    s3_client, auth, store, s3, s3_server, bucket
):
    sid, key = await _recorded(store, s3, "alice")
    await assert_error(await s3_client.get(f"/api/sessions/{sid}/recording", headers=auth("bob")), 404)
    await assert_error(await s3_client.delete(f"/api/sessions/{sid}/recording", headers=auth("bob")), 404)
    assert _object(s3_server, s3, key) == AUDIO


async def test_delete_removes_the_object_and_the_sessions_recording_fields(
    s3_client, auth, store, s3, s3_server, bucket, prefix
):
    sid, key = await _recorded(store, s3, "alice")
    resp = await s3_client.delete(f"/api/sessions/{sid}/recording", headers=auth("alice"))
    assert resp.status == 200 and (await resp.json())["success"] is True
    assert _object(s3_server, s3, key) is None and s3_server.objects(bucket, prefix) == {}
    s = await (await s3_client.get(f"/api/sessions/{sid}", headers=auth("alice"))).json()
    assert s["recordingUrl"] is None and s["recordingDuration"] is None
    await assert_error(await s3_client.delete(f"/api/sessions/{sid}/recording", headers=auth("alice")), 404)
    await assert_error(await s3_client.get(f"/api/sessions/{sid}/recording", headers=auth("alice")), 404)


async def test_an_object_gone_from_the_bucket_is_a_404(s3_client, auth, store, s3, s3_server, bucket, prefix):
    sid, key = await _recorded(store, s3, "alice")
    s3_server.client().delete_object(Bucket=bucket, Key=f"{prefix}/{key}")
    body = await assert_error(await s3_client.get(f"/api/sessions/{sid}/recording", headers=auth("alice")), 404)
    assert "gone" in body["detail"]


async def test_retention_deletes_the_objects_of_calls_that_ended_before_it(store, s3, s3_server, bucket, prefix):
    old, _old_key = await _recorded(store, s3, "alice", ended_at="2026-01-10T10:01:05.400000Z")
    recent, recent_key = await _recorded(store, s3, "bob", ended_at=to_iso(datetime.now(UTC) - timedelta(days=29)))
    assert await sweep_expired(store, s3, retention_days=30) == [old]
    assert s3_server.objects(bucket, prefix) == {f"{prefix}/{recent_key}": len(AUDIO)}
    assert store.read_sync(lambda db: repo.get_row(db, old))["recording_key"] is None
    assert store.read_sync(lambda db: repo.get_row(db, recent))["recording_key"] == recent_key
    assert await sweep_expired(store, s3, retention_days=30) == []


async def test_any_node_serves_what_another_uploaded(store, s3, s3_settings, s3_server, tmp_path):
    """Two nodes share the store and the bucket, not a disk: the second reads what the first's job uploaded."""
    _sid, key = await _recorded(store, s3, "alice")
    other = storage_for(s3_settings.with_(data_dir=tmp_path / "other-node"))
    found = await other.open(key)
    assert found is not None and not isinstance(found, Path)
    try:
        assert b"".join([c async for c in found.chunks]) == AUDIO
    finally:
        await found.close()


def _ogg(path: Path, seconds: float) -> None:
    """A real stereo Ogg/Opus file of `seconds` of a quiet tone, as the recorder writes."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(path), "w", format="ogg") as out:
        stream = out.add_stream("libopus", rate=48_000)
        stream.layout = "stereo"
        n = int(seconds * 48_000)
        t = np.arange(n) / 48_000
        tone = (0.1 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)
        for i in range(0, n, 960):
            part = np.ascontiguousarray(np.stack([tone[i : i + 960]] * 2))
            frame = av.AudioFrame.from_ndarray(part, format="fltp", layout="stereo")
            frame.sample_rate = 48_000
            frame.pts = i
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode(None):
            out.mux(packet)


class _FinishedRecorder:
    """Stands in for LiveKit's recorder once the call ended: its file is complete, closing it does nothing."""

    def __init__(self, path: Path) -> None:
        self.output_path = path

    async def aclose(self) -> None:
        return None


async def test_an_upload_to_a_stopped_store_keeps_the_local_file_and_the_session_says_why(
    s3_client, auth, store, s3_settings, e2e_workdir, caplog
):
    """Its own SeaweedFS, stopped before the call ends: nothing is counted as stored that was not; the node's next
    start keeps it."""
    from tests.harness.seaweedfs import start_seaweedfs

    doomed = start_seaweedfs(e2e_workdir / f"seaweedfs-{secrets.token_hex(4)}")
    try:
        doomed.create_bucket("doomed")
        storage = storage_for(
            s3_settings.with_(
                recordings_url="s3://doomed/rec",
                recordings_s3_endpoint=doomed.endpoint,
                recordings_s3_access_key_id=doomed.access_key_id,
                recordings_s3_secret_access_key=doomed.secret_access_key,
            )
        )
        await storage.check()  # it was there when the product started
    finally:
        doomed.stop()
    _, sid = seed_call(store, "alice")
    recording = CallRecording(store, storage, owner_id=tenant_of("alice"), session_id=sid)
    path = storage.writing_path(recording.key)
    _ogg(path, 2.0)
    store.write_sync(lambda db: repo.start_recording(db, sid, recording.key))
    recording._recorder = _FinishedRecorder(path)  # type: ignore[assignment]
    caplog.set_level("INFO", logger="voxarena")
    assert await recording.finish() is None  # not a recording the ledger or the session counts
    assert path.is_file() and path.stat().st_size > 0  # the only copy stays
    row = store.read_sync(lambda db: repo.get_row(db, sid))
    assert row["recording_bytes"] is None and abs(row["recording_duration_ms"] - 2000) < 100, row
    assert row["recording_error"] == "the upload to object storage failed: the store could not be reached"
    # where the file stays (and the store's address) is in the operator's log, not in what the tenant reads
    assert any(str(path) in r.getMessage() for r in caplog.records), [r.getMessage() for r in caplog.records]
    s = await (await s3_client.get(f"/api/sessions/{sid}", headers=auth("alice"))).json()
    assert s["recordingUrl"] is None and s["recordingError"] == row["recording_error"]
    body = await assert_error(await s3_client.get(f"/api/sessions/{sid}/recording", headers=auth("alice")), 404)
    assert "not kept" in body["detail"]

    # the node's next start, its store back: the file is kept then, and the session is whole
    storage = storage_for(s3_settings)
    assert await keep_leftovers(store, storage, PriceBook.load()) == 1
    assert not path.exists()
    s = await (await s3_client.get(f"/api/sessions/{sid}", headers=auth("alice"))).json()
    assert s["recordingError"] is None and s["recordingUrl"] == f"/api/sessions/{sid}/recording", s
    resp = await s3_client.get(s["recordingUrl"], headers=auth("alice"))
    assert (
        resp.status == 200
        and len(await resp.read()) == store.read_sync(lambda db: repo.get_row(db, sid))["recording_bytes"]
    )


async def test_a_crashed_jobs_file_is_kept_at_the_nodes_next_start_and_one_no_session_names_is_left_alone(
    store, s3, s3_server, bucket, prefix
):
    _, sid = seed_call(store, "alice", ended_at=None)
    key = recording_key(tenant_of("alice"), sid)
    store.write_sync(lambda db: repo.start_recording(db, sid, key))  # the job died before it finalized
    _ogg(s3.writing_path(key), 3.0)
    stray = recording_key(tenant_of("bob"), "0b1c2d3e-0000-4000-8000-000000000000")
    s3.writing_path(stray).write_bytes(b"not a session's")
    assert sorted(s3.leftovers()) == sorted([key, stray])
    assert await keep_leftovers(store, s3, PriceBook.load()) == 1
    row = store.read_sync(lambda db: repo.get_row(db, sid))
    assert abs(row["recording_duration_ms"] - 3000) < 100 and row["recording_error"] is None, row
    assert s3_server.objects(bucket, prefix) == {f"{prefix}/{key}": row["recording_bytes"]}
    assert s3.leftovers() == [stray] and s3.writing_path(stray).read_bytes() == b"not a session's"

    # its minutes in the ledger, once: the next start finds nothing more to keep or count
    def storage_lines() -> list[dict]:
        return store.read_sync(
            lambda db: list(
                db.query("SELECT * FROM usage_events WHERE session_id = ? AND event_type = 'storage_minutes'", [sid])
            )
        )

    (line,) = storage_lines()
    assert line["provider"] == "s3" and abs(Decimal(line["quantity"]) * 60_000 - row["recording_duration_ms"]) < 1
    assert await keep_leftovers(store, s3, PriceBook.load()) == 0
    assert len(storage_lines()) == 1


async def test_a_bucket_that_cannot_be_used_is_refused_by_the_start_check(s3_settings, s3_server):
    with pytest.raises(StorageMisconfigured, match=re.escape("'no-such-bucket' at http://127.0.0.1:")):
        await storage_for(s3_settings.with_(recordings_url="s3://no-such-bucket/x")).check()
    wrong_key = s3_settings.with_(recordings_s3_secret_access_key="not-" + s3_server.secret_access_key)
    with pytest.raises(StorageMisconfigured, match=re.escape("access denied (HTTP 403)")):
        await storage_for(wrong_key).check()
    await storage_for(s3_settings).check()


async def test_finalize_without_a_file_fails_and_stores_nothing(s3, s3_server, bucket, prefix):
    with pytest.raises(FinalizeFailed):
        await asyncio.to_thread(s3.finalize, "ten_x/missing.ogg")
    assert s3_server.objects(bucket, prefix) == {}


@pytest.fixture(scope="module")
def s3_voice_stack(netns_ip, e2e_workdir, fakes, e2e_database_url, s3_server):
    """`voxarena serve` keeping its recordings in the harness's SeaweedFS (its own livekit-server, like
    voice_stack). Yields (product, bucket, prefix)."""
    from tests.e2e.conftest import own_stack

    bucket, prefix = s3_server.bucket, f"calls-{secrets.token_hex(4)}/rec"
    extra = {
        "VOXARENA_RECORDINGS_URL": f"s3://{bucket}/{prefix}",
        "VOXARENA_RECORDINGS_S3_ENDPOINT": s3_server.endpoint,
        "VOXARENA_RECORDINGS_S3_REGION": s3_server.region,
        "VOXARENA_RECORDINGS_S3_ACCESS_KEY_ID": s3_server.access_key_id,
        "VOXARENA_RECORDINGS_S3_SECRET_ACCESS_KEY": s3_server.secret_access_key,
    }
    with own_stack(e2e_workdir, fakes, "s3", extra=extra, database_url=e2e_database_url) as (product, _server):
        yield product, bucket, prefix


async def test_a_recorded_web_call_is_uploaded_to_the_bucket_and_served_from_it(s3_voice_stack, s3_server, tmp_path):
    from tests.e2e.test_recordings import GREETING, NOTICE, _epoch, _ledger_line, _probe

    product, bucket, prefix = s3_voice_stack
    agent_id = await product.create_agent(
        name="Recorded to S3", firstMessage=GREETING, recordingEnabled=True, recordingNotice=NOTICE
    )
    client, tok = await product.join(agent_id)
    try:
        t0 = time.monotonic()
        await client.wait_for_audio(after=t0, min_nonsilent_s=0.5, timeout=30)
        await client.wait_for_quiet(quiet_s=0.8, timeout=30)  # the notice and the greeting played out
    finally:
        await client.disconnect()
    sid = tok["sessionId"]
    s = await product.wait_session(
        sid,
        "alice",
        lambda s: s["endedAt"] is not None and (s["recordingDuration"] is not None or s["recordingError"]),
        timeout=45,
        what="ended, its recording uploaded",
    )
    assert s["recordingError"] is None, s["recordingError"]
    assert s["recordingUrl"] == f"/api/sessions/{sid}/recording"

    # the object: under the prefix, the tenant and the session; the local copy gone
    (key,) = [k for k in s3_server.objects(bucket, prefix) if k.endswith(f"/{sid}.ogg")]
    tenant = key.split("/")[-2]
    assert key == f"{prefix}/{tenant}/{sid}.ogg" and tenant.startswith("ten_"), key
    assert not list((product.data_dir / "recordings-pending").rglob(f"{sid}.ogg"))
    assert not (product.data_dir / "recordings").exists() or not list((product.data_dir / "recordings").rglob("*.ogg"))
    whole = s3_server.client().get_object(Bucket=bucket, Key=key)["Body"].read()
    path = tmp_path / f"{sid}.ogg"
    path.write_bytes(whole)
    probe = _probe(path)
    (stream,) = probe["streams"]
    assert probe["format"]["format_name"] == "ogg" and stream["codec_name"] == "opus" and stream["channels"] == 2
    file_seconds = float(probe["format"]["duration"])
    session_seconds = _epoch(s["endedAt"]) - _epoch(s["startedAt"])
    print(f"object {len(whole)} bytes, {file_seconds:.3f} s; session {session_seconds:.3f} s")
    assert abs(file_seconds - session_seconds) < 0.5
    assert abs(s["recordingDuration"] - file_seconds) < 0.1

    line = await _ledger_line(product, sid, "storage_minutes", timeout=15)
    assert line["provider"] == "s3" and line["total_cost_nanos"] == 0, line

    # served from the bucket through the API, then deleted from it
    await served_then_deleted(product, s, whole)
    assert key not in s3_server.objects(bucket, prefix)


async def test_a_range_the_api_does_not_take_gets_the_whole_recording(s3_client, auth, store, s3):
    sid, _ = await _recorded(store, s3, "alice")
    for header in ("bytes=5-2", "bytes=0-1,5-6", "items=0-9"):
        resp = await s3_client.get(f"/api/sessions/{sid}/recording", headers={**auth("alice"), "Range": header})
        assert resp.status == 200 and "Content-Range" not in resp.headers, header
        assert await resp.read() == AUDIO


def test_serve_refuses_to_start_on_a_bucket_it_cannot_use(s3_server, tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("VOXARENA_")}
    env |= {
        "VOXARENA_DATA_DIR": str(tmp_path / "data"),
        "VOXARENA_RECORDINGS_URL": "s3://no-such-bucket/calls",
        "VOXARENA_RECORDINGS_S3_ENDPOINT": s3_server.endpoint,
        "VOXARENA_RECORDINGS_S3_ACCESS_KEY_ID": s3_server.access_key_id,
        "VOXARENA_RECORDINGS_S3_SECRET_ACCESS_KEY": s3_server.secret_access_key,
    }
    voxarena = str(Path(sys.executable).with_name("voxarena"))
    out = subprocess.run([voxarena, "serve"], env=env, capture_output=True, text=True, timeout=60)
    assert out.returncode == 2, out.stderr[-2000:]
    assert "VOXARENA_RECORDINGS_URL: the bucket 'no-such-bucket'" in out.stderr, out.stderr[-2000:]
    assert "no such bucket (HTTP 404)" in out.stderr
    assert s3_server.secret_access_key not in out.stderr
    env["VOXARENA_RECORDINGS_URL"] = "s3://No_Such"
    out = subprocess.run([voxarena, "serve"], env=env, capture_output=True, text=True, timeout=60)
    assert out.returncode == 2 and "'No_Such' is not an S3 bucket name" in out.stderr, out.stderr[-2000:]


async def test_a_call_whose_job_was_killed_is_uploaded_at_the_nodes_restart(s3_voice_stack, s3_server, tmp_path):
    """A crash loses at most the recorder's last seconds, with object storage too: the file grows on disk as the
    call runs, the part written stays on the node when its job is killed, and the node's next start uploads it."""
    from tests.e2e.test_recordings import GREETING, _probe
    from tests.harness.audio import speech_wav
    from tests.harness.product import job_process_pids

    product, bucket, prefix = s3_voice_stack
    agent_id = await product.create_agent(name="Recorded, then killed", firstMessage=GREETING, recordingEnabled=True)
    client, tok = await product.join(agent_id)
    sid = tok["sessionId"]
    speaking = None
    try:
        await client.wait_for_audio(after=time.monotonic(), min_nonsilent_s=0.5, timeout=30)
        # the recorder places the caller's audio as it comes: the caller speaks, then stays on the line
        speaking = asyncio.create_task(
            client.publish_wav(speech_wav("What are your opening hours?"), trail_silence=8.0)
        )
        deadline = time.monotonic() + 20
        pending: list[Path] = []
        while not (pending and pending[0].stat().st_size > 10_000):  # written as the call runs, not at its end
            sizes = [p.stat().st_size for p in pending]
            assert time.monotonic() < deadline, f"the recording of {sid} is not growing on disk: {pending} {sizes}"
            await asyncio.sleep(0.2)
            pending = list((product.data_dir / "recordings-pending").rglob(f"{sid}.ogg"))
        pids = job_process_pids(product)
        assert pids, "no job processes found to kill"
        for pid in pids:
            os.kill(pid, signal.SIGKILL)
    finally:
        if speaking is not None:
            speaking.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await speaking
        await client.disconnect()
    s = await product.wait_session(sid, "alice", lambda s: s["endedAt"] is not None, timeout=60, what="closed")
    assert s["recordingDuration"] is None and s["recordingError"] is None, s  # never finalized
    status, body = await product.request("GET", f"/api/sessions/{sid}/recording")
    assert status == 404 and "gone" in body["detail"], body
    assert pending[0].is_file()

    product.restart()
    s = await product.wait_session(
        sid, "alice", lambda s: s["recordingDuration"] is not None, timeout=30, what="its recording kept"
    )
    assert not pending[0].exists()
    key = f"{prefix}/{pending[0].parent.name}/{sid}.ogg"  # <prefix>/<tenant>/<session>.ogg
    whole = s3_server.client().get_object(Bucket=bucket, Key=key)["Body"].read()
    copy = tmp_path / f"{sid}.ogg"
    copy.write_bytes(whole)
    seconds = float(_probe(copy)["format"]["duration"])
    print(f"kept {len(whole)} bytes, {seconds:.2f} s of a call recorded until its job was killed")
    assert seconds > 1.0 and abs(s["recordingDuration"] - seconds) < 0.1
    async with (
        aiohttp.ClientSession() as http,
        http.get(product.base_url + s["recordingUrl"], headers=product.headers("alice")) as r,
    ):
        assert r.status == 200 and await r.read() == whole
