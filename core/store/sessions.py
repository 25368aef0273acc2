"""Sessions, their transcript items and analyses."""

from __future__ import annotations

import json
import uuid
from typing import Any

import sqlite_utils

from core.call_limits import refuse_beyond_limit
from core.store import agent_webhooks, calls, events, tenants
from core.store import tool_calls as tool_calls_repo
from core.store.dialect import json_text, lock_for_transaction
from core.store.dialect import marks as in_marks
from core.store.errors import NotFoundError
from core.store.events import stream_event
from core.store.timefmt import day_start, elapsed_ms, now_iso, today_utc, whole_seconds

ANALYSIS_FIELDS = ("summary", "sentiment", "sentiment_score", "topics", "outcome", "action_items")
METRIC_KEYS = ("end_of_turn_delay", "transcription_delay", "llm_ttft", "tts_ttfb", "e2e_latency")


# What SQLite's INSERT OR REPLACE did to an analysis, in the form both engines take: every column from the new row.
_REPLACE_ANALYSIS = ", ".join(
    f"{c} = excluded.{c}"
    for c in (
        "owner_id",
        "status",
        "summary",
        "sentiment",
        "sentiment_score",
        "topics",
        "outcome",
        "action_items",
        "error",
        "attempts",
        "created_at",
    )
)


def create(
    db: sqlite_utils.Database,
    *,
    owner_id: str,
    agent_id: str,
    session_id: str | None = None,
    room_name: str | None = None,
    direction: str = "inbound",
    phone_number: str | None = None,
    call_status: str | None = None,
    status: str = "pending",
    started_at: str | None = None,
    client_id: str | None = None,
    context: dict[str, Any] | None = None,
    channel: str = "voice",
    user_id: str | None = None,
    conversation_id: str | None = None,
    previous_session_id: str | None = None,
    from_number: str | None = None,
    to_number: str | None = None,
    phone_number_id: str | None = None,
    campaign: str | None = None,
) -> str:
    """Create the session row; with an explicit id a repeat is a no-op, so a re-dispatched job cannot duplicate it.
    An inbound phone call has `from_number` (the caller), `to_number` (the number dialled) and `phone_number_id`.
    ``campaign`` (None: the agent's default campaign, if it has one) is what cost-per-outcome figures group by."""
    sid = session_id or str(uuid.uuid4())
    now = now_iso()
    cur = db.execute(
        "INSERT INTO sessions (id, owner_id, agent_id, room_name, direction, outbound_phone_number, "
        "call_status, status, started_at, last_activity_at, created_at, client_id, context, channel, user_id, "
        "conversation_id, previous_session_id, from_number, to_number, phone_number_id) "
        "VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?) ON CONFLICT DO NOTHING",
        [
            sid,
            owner_id,
            agent_id,
            room_name,
            direction,
            phone_number,
            call_status,
            status,
            started_at or now,
            now,
            now,
            client_id,
            json.dumps(context) if context is not None else None,
            channel,
            user_id,
            conversation_id,
            previous_session_id,
            from_number,
            to_number,
            phone_number_id,
        ],
    )
    set_campaign(db, sid, campaign)
    if cur.rowcount and status == "active":  # a call that starts as it is created (a relay call)
        _started(db, get_row(db, sid))
    return sid


def set_campaign(db: sqlite_utils.Database, session_id: str, campaign: str | None) -> None:
    """The session's campaign: the one given, else its agent's default (``config.campaign``); set once."""
    db.execute(
        f"UPDATE sessions SET campaign = COALESCE(?, (SELECT {json_text(db, 'a.config', 'campaign')} FROM agents a "
        "WHERE a.id = sessions.agent_id)) WHERE id = ? AND campaign IS NULL",
        [campaign, session_id],
    )


def _started(db: sqlite_utils.Database, row: dict[str, Any]) -> None:
    stream_event(
        db,
        row["owner_id"],
        row["id"],
        row["channel"],
        "call.started",
        {
            "agent_id": row["agent_id"],
            "direction": row["direction"],
            "from_number": row["from_number"],
            "to_number": row["to_number"] or row["outbound_phone_number"],
            "started_at": row["started_at"],
        },
    )
    phone = calls.live_for_session(db, row["id"])
    if phone is not None:  # an outbound call's status so far (RINGING) follows its start on the stream
        calls.stream_status(db, phone)


def set_answered_by(db: sqlite_utils.Database, session_id: str, verdict: dict[str, Any]) -> None:
    """Who answered an outbound call (voicemail detection): `verdict` is ``{outcome, reason, transcript,
    speechDuration, delay}``; the outcome is kept on the session and the whole as its ``amd.result`` event."""
    db.execute("UPDATE sessions SET answered_by = ? WHERE id = ?", [verdict["outcome"], session_id])
    events.emit_for_session(db, session_id, "amd.result", verdict)


def start_recording(db: sqlite_utils.Database, session_id: str, key: str) -> None:
    """The call's audio is being written under `key` (core/recordings.py): kept from the start, so the part of a
    call that crashed mid-way is still found; its duration and size come when it is finalized."""
    db.execute(
        "UPDATE sessions SET recording_key = ?, recording_duration_ms = NULL, recording_bytes = NULL, "
        "recording_error = NULL WHERE id = ?",
        [key, session_id],
    )


def finish_recording(db: sqlite_utils.Database, session_id: str, *, duration_ms: int, size: int) -> None:
    db.execute(
        "UPDATE sessions SET recording_duration_ms = ?, recording_bytes = ?, recording_error = NULL "
        "WHERE id = ? AND recording_key IS NOT NULL",
        [duration_ms, size, session_id],
    )


def fail_recording(db: sqlite_utils.Database, session_id: str, *, duration_ms: int | None, error: str) -> None:
    """The call's recording could not be kept (its upload failed): the session names it with why, and has no
    size (nothing was stored); the duration is the length of what was recorded."""
    db.execute(
        "UPDATE sessions SET recording_duration_ms = ?, recording_bytes = NULL, recording_error = ? "
        "WHERE id = ? AND recording_key IS NOT NULL",
        [duration_ms, error, session_id],
    )


def recording(db: sqlite_utils.Database, owner_id: str, session_id: str) -> dict[str, Any]:
    """The session's recording fields (``id``, ``owner_id``, ``recording_key``, ``recording_duration_ms``,
    ``recording_bytes``, ``recording_error``); NotFoundError when the session is not the owner's or has no
    recording."""
    row = get_row(db, session_id, owner_id)
    if not row.get("recording_key"):
        raise NotFoundError(f"session {session_id} has no recording")
    fields = ("id", "owner_id", "recording_key", "recording_duration_ms", "recording_bytes", "recording_error")
    return {k: row.get(k) for k in fields}


def clear_recording(db: sqlite_utils.Database, session_id: str) -> None:
    db.execute(
        "UPDATE sessions SET recording_key = NULL, recording_duration_ms = NULL, recording_bytes = NULL, "
        "recording_error = NULL WHERE id = ?",
        [session_id],
    )


def recordings_ended_before(db: sqlite_utils.Database, cutoff_iso: str, *, limit: int = 500) -> list[dict[str, Any]]:
    """Recordings of calls that ended before `cutoff_iso` (the retention sweep), oldest first."""
    return list(
        db.query(
            "SELECT id, owner_id, ended_at, recording_key FROM sessions WHERE recording_key IS NOT NULL "
            "AND ended_at IS NOT NULL AND ended_at < ? ORDER BY ended_at LIMIT ?",
            [cutoff_iso, limit],
        )
    )


def get_row(db: sqlite_utils.Database, session_id: str, owner_id: str | None = None) -> dict[str, Any]:
    if owner_id is None:
        rows = list(db.query("SELECT * FROM sessions WHERE id = ?", [session_id]))
    else:
        rows = list(db.query("SELECT * FROM sessions WHERE id = ? AND owner_id = ?", [session_id, owner_id]))
    if not rows:
        raise NotFoundError(f"session {session_id} not found")
    return rows[0]


def exists(db: sqlite_utils.Database, session_id: str) -> bool:
    return db.execute("SELECT 1 FROM sessions WHERE id = ?", [session_id]).fetchone() is not None


def mark_active(
    db: sqlite_utils.Database,
    session_id: str,
    *,
    job_id: str | None,
    started_at: str | None = None,
    node_id: str | None = None,
) -> None:
    """The call's job started (on the node ``node_id``: if that node is lost, another ends the call)."""
    now = now_iso()
    cur = db.execute(
        "UPDATE sessions SET status = 'active', job_id = COALESCE(?, job_id), started_at = COALESCE(?, started_at), "
        "last_activity_at = ?, node_id = COALESCE(?, node_id) WHERE id = ? AND status = 'pending'",
        [job_id, started_at, now, node_id or None, session_id],
    )
    if cur.rowcount:
        _started(db, get_row(db, session_id))


def append_item(
    db: sqlite_utils.Database,
    *,
    session_id: str,
    item_key: str,
    speaker: str,
    content: str,
    timestamp: str,
    interrupted: bool = False,
    metrics: dict[str, Any] | None = None,
    providers: dict[str, str] | None = None,
    source: str | None = None,
) -> bool:
    """Append one final transcript item; the (session, item_key) pair makes a retried append a no-op."""
    owner = db.execute("SELECT owner_id, channel FROM sessions WHERE id = ?", [session_id]).fetchone()
    if owner is None:
        raise NotFoundError(f"session {session_id} not found")
    cur = db.execute(
        "INSERT INTO transcript_items (session_id, owner_id, item_key, speaker, content, interrupted, "
        "metrics, providers, timestamp, source) VALUES (?,?,?,?,?,?,?,?,?,?) ON CONFLICT DO NOTHING",
        [
            session_id,
            owner[0],
            item_key,
            speaker,
            content,
            int(interrupted),
            json.dumps(metrics) if metrics else None,
            json.dumps(providers) if providers else None,
            timestamp,
            source,
        ],
    )
    db.execute("UPDATE sessions SET last_activity_at = ? WHERE id = ?", [now_iso(), session_id])
    if cur.rowcount:
        said = {"speaker": speaker.lower(), "text": content, **({"source": source} if source else {})}
        stream_event(db, owner[0], session_id, owner[1], "transcript.final", said)
    return cur.rowcount > 0


def touch(db: sqlite_utils.Database, session_id: str) -> None:
    db.execute("UPDATE sessions SET last_activity_at = ? WHERE id = ? AND status != 'ended'", [now_iso(), session_id])


def end(
    db: sqlite_utils.Database,
    session_id: str,
    *,
    reason: str,
    ended_at: str | None = None,
    error: str | None = None,
) -> bool:
    """Close a session once; later calls (a replayed webhook, the sweeper, the job's own end) change nothing."""
    row = db.execute(
        "SELECT started_at, ended_at, owner_id, error, channel FROM sessions WHERE id = ?", [session_id]
    ).fetchone()
    if row is None:
        raise NotFoundError(f"session {session_id} not found")
    if row[1] is not None:
        if error:
            db.execute("UPDATE sessions SET error = COALESCE(error, ?) WHERE id = ?", [error, session_id])
        return False
    ended = ended_at or now_iso()
    duration_ms = elapsed_ms(row[0], ended)
    phone = calls.end_with_session(db, session_id, reason=reason, error=row[3] or error, at=ended)
    if phone is not None:
        # An outbound call ends once, and the session with it: the call's reason (`ended_by_api`, `busy`, ...) is
        # the session's, and both last from the answer to the hang-up (0 for a call never answered).
        reason, ended, duration_ms = phone["end_reason"], phone["ended_at"], phone["duration_ms"]
        if not phone["answered_at"]:  # busy, declined, no answer, canceled, a failed dial or dispatch
            skip_analysis(db, session_id, reason=f"skipped: nothing to analyse, the call was never answered ({reason})")
    db.execute(
        "UPDATE sessions SET status = 'ended', ended_at = ?, duration_ms = ?, end_reason = ?, "
        "error = COALESCE(error, ?), last_activity_at = ? WHERE id = ?",
        [ended, duration_ms, reason, error, now_iso(), session_id],
    )
    failure = row[3] or error
    if failure and not events.has_error(db, session_id, failure):
        stream_event(db, row[2], session_id, row[4], "error", {"detail": failure})
    stream_event(
        db,
        row[2],
        session_id,
        row[4],
        "call.ended",
        {"duration": whole_seconds(duration_ms), "reason": reason, "error": failure, "ended_at": ended},
    )
    return True


def stale_live_sessions(db: sqlite_utils.Database, cutoff_iso: str) -> list[dict[str, Any]]:
    return list(
        db.query(
            "SELECT id, room_name, job_id, last_activity_at FROM sessions "
            "WHERE status != 'ended' AND last_activity_at < ?",
            [cutoff_iso],
        )
    )


def room_taken_by_other(db: sqlite_utils.Database, room_name: str, owner_id: str) -> bool:
    return (
        db.execute(
            "SELECT 1 FROM sessions WHERE room_name = ? AND owner_id != ? AND status != 'ended' LIMIT 1",
            [room_name, owner_id],
        ).fetchone()
        is not None
    )


def end_job_session(db: sqlite_utils.Database, job_id: str, room: str, error: str) -> list[str]:
    """The live sessions of a LiveKit job whose executor died mid-call (the one it runs, or, if it died before taking
    it, its room's session no job has taken), ended as an error, their analysis skipped: the job that would run it is
    gone (the transcript up to the failure is kept). Returns their ids (none: the job had ended its call itself)."""
    rows = db.execute("SELECT id FROM sessions WHERE job_id = ? AND status != 'ended'", [job_id]).fetchall()
    if not rows:
        rows = db.execute(
            "SELECT id FROM sessions WHERE room_name = ? AND job_id IS NULL AND status != 'ended'", [room]
        ).fetchall()
    ended = []
    for (session_id,) in rows:
        if end(db, session_id, reason="error", error=error):
            skip_analysis(db, session_id, reason="skipped: the call's job died before the call's end")
            ended.append(str(session_id))
    return ended


def live_sessions_for_room(db: sqlite_utils.Database, room_name: str) -> list[str]:
    return [
        r[0]
        for r in db.execute("SELECT id FROM sessions WHERE room_name = ? AND status != 'ended'", [room_name]).fetchall()
    ]


# ---- analysis ----


def store_analysis(
    db: sqlite_utils.Database, session_id: str, *, result: dict[str, Any] | None, error: str | None, attempts: int
) -> None:
    owner = db.execute("SELECT owner_id FROM sessions WHERE id = ?", [session_id]).fetchone()
    if owner is None:
        raise NotFoundError(f"session {session_id} not found")
    values: dict[str, Any] = dict.fromkeys(ANALYSIS_FIELDS)
    if result is not None:
        values.update(result)
        values["topics"] = json.dumps(result["topics"])
        values["action_items"] = json.dumps(result["action_items"])
    db.execute(
        "INSERT INTO analyses (session_id, owner_id, status, summary, sentiment, sentiment_score, topics, "
        "outcome, action_items, error, attempts, created_at) VALUES (?,?,?,?,?,?,?,?,?,?,?,?) "
        f"ON CONFLICT (session_id) DO UPDATE SET {_REPLACE_ANALYSIS}",
        [
            session_id,
            owner[0],
            "completed" if result is not None else "failed",
            values["summary"],
            values["sentiment"],
            values["sentiment_score"],
            values["topics"],
            values["outcome"],
            values["action_items"],
            error,
            attempts,
            now_iso(),
        ],
    )
    agent_webhooks.enqueue_session_ended(db, session_id)


def skip_analysis(db: sqlite_utils.Database, session_id: str, *, reason: str) -> None:
    """The call has nothing to analyse (the caller never spoke, no agent ever joined): not run, not billed."""
    owner = db.execute("SELECT owner_id FROM sessions WHERE id = ?", [session_id]).fetchone()
    if owner is None:
        raise NotFoundError(f"session {session_id} not found")
    db.execute(
        "INSERT INTO analyses (session_id, owner_id, status, error, attempts, created_at) "
        f"VALUES (?,?,?,?,?,?) ON CONFLICT (session_id) DO UPDATE SET {_REPLACE_ANALYSIS}",
        [session_id, owner[0], "skipped", reason, 0, now_iso()],
    )
    agent_webhooks.enqueue_session_ended(db, session_id)


def analysis_result(row: dict[str, Any] | None) -> dict[str, Any] | None:
    """A completed analysis's result (None otherwise)."""
    if row is None or row["status"] != "completed":
        return None
    return {
        "summary": row["summary"],
        "sentiment": row["sentiment"],
        "sentiment_score": row["sentiment_score"],
        "topics": json.loads(row["topics"]),
        "outcome": row["outcome"],
        "action_items": json.loads(row["action_items"]),
    }


def get_analysis(db: sqlite_utils.Database, owner_id: str, session_id: str) -> dict[str, Any] | None:
    get_row(db, session_id, owner_id)
    rows = list(db.query("SELECT * FROM analyses WHERE session_id = ?", [session_id]))
    return analysis_result(rows[0] if rows else None)


# ---- reads for the API ----


def _item(row: dict[str, Any]) -> dict[str, Any]:
    metrics = json.loads(row["metrics"]) if row["metrics"] else None
    return {
        "speaker": row["speaker"],
        "content": row["content"],
        "timestamp": row["timestamp"],
        "interrupted": bool(row["interrupted"]),
        "metrics": metrics,
        "providers": json.loads(row["providers"]) if row["providers"] else None,
        "source": row["source"],
    }


def _items_by_session(db: sqlite_utils.Database, session_ids: list[str]) -> dict[str, list[dict[str, Any]]]:
    return {sid: items for sid, (_, items) in transcripts(db, session_ids).items()}


def transcripts(
    db: sqlite_utils.Database, session_ids: list[str]
) -> dict[str, tuple[tuple[int, int], list[dict[str, Any]]]]:
    """Each session's transcript items, in order, with the version they make (see `transcript_versions`)."""
    items: dict[str, list[dict[str, Any]]] = {sid: [] for sid in session_ids}
    newest = dict.fromkeys(session_ids, 0)
    if session_ids:
        marks = in_marks(session_ids)
        for row in db.query(
            f"SELECT * FROM transcript_items WHERE session_id IN ({marks}) ORDER BY session_id, timestamp, id",
            session_ids,
        ):
            sid = row["session_id"]
            items[sid].append(_item(row))
            newest[sid] = max(newest[sid], row["id"])
    return {sid: ((len(items[sid]), newest[sid]), items[sid]) for sid in session_ids}


def transcript_versions(db: sqlite_utils.Database, session_ids: list[str]) -> dict[str, tuple[int, int]]:
    """Each session's transcript version: its number of items and the newest item's id ((0, 0) for none). Items are
    only ever appended (a retried append is a no-op) and go only with their session, so two reads with the same
    version read the same transcript."""
    out = dict.fromkeys(session_ids, (0, 0))
    if not session_ids:
        return out
    marks = in_marks(session_ids)
    for sid, count, newest in db.execute(
        f"SELECT session_id, COUNT(*), MAX(id) FROM transcript_items WHERE session_id IN ({marks}) GROUP BY session_id",
        session_ids,
    ).fetchall():
        out[sid] = (int(count), int(newest))
    return out


def _analyses_by_session(db: sqlite_utils.Database, session_ids: list[str]) -> dict[str, dict[str, Any]]:
    if not session_ids:
        return {}
    marks = in_marks(session_ids)
    return {r["session_id"]: r for r in db.query(f"SELECT * FROM analyses WHERE session_id IN ({marks})", session_ids)}


def items_for(db: sqlite_utils.Database, session_id: str) -> list[dict[str, Any]]:
    return _items_by_session(db, [session_id])[session_id]


def _records(
    db: sqlite_utils.Database, rows: list[dict[str, Any]], *, with_transcripts: bool = True
) -> list[dict[str, Any]]:
    """Session rows with their transcript items and analysis row (None until one exists); the wire shape is made
    in ``api/schemas/sessions.py``. Without transcripts, each carries its `transcript_version` instead."""
    ids = [r["id"] for r in rows]
    analyses = _analyses_by_session(db, ids)
    tools = tool_calls_repo.by_session(db, ids)
    if with_transcripts:
        items = _items_by_session(db, ids)
        part: dict[str, dict[str, Any]] = {sid: {"transcript": items[sid]} for sid in ids}
    else:
        versions = transcript_versions(db, ids)
        part = {sid: {"transcript_version": versions[sid]} for sid in ids}
    return [{**r, **part[r["id"]], "analysis_row": analyses.get(r["id"]), "tool_calls": tools[r["id"]]} for r in rows]


def get(db: sqlite_utils.Database, owner_id: str, session_id: str, *, with_transcript: bool = True) -> dict[str, Any]:
    """The owner's session with its transcript items, or (`with_transcript=False`) with its `transcript_version`
    for a caller that keeps the transcripts it has read (`transcripts`)."""
    return _records(db, [get_row(db, session_id, owner_id)], with_transcripts=with_transcript)[0]


def transcript(db: sqlite_utils.Database, owner_id: str, session_id: str) -> list[dict[str, Any]]:
    get_row(db, session_id, owner_id)
    return _items_by_session(db, [session_id])[session_id]


def list_(
    db: sqlite_utils.Database,
    owner_id: str,
    *,
    page: int,
    limit: int,
    start: str | None,
    end_exclusive: str | None,
    direction: str | None,
    channel: str | None = None,
) -> dict[str, Any]:
    """A page of the owner's sessions, newest first, and how many match. Each record carries its
    `transcript_version`, not its items: the caller keeps the transcripts it has read and reads the others
    (`transcripts`)."""
    # A pending session is a token handed out for a call that has not started; it is not a call yet.
    where = ["owner_id = ?", "status != 'pending'"]
    args: list[Any] = [owner_id]
    if start:
        where.append("started_at >= ?")
        args.append(start)
    if end_exclusive:
        where.append("started_at < ?")
        args.append(end_exclusive)
    if direction:
        where.append("direction = ?")
        args.append(direction)
    if channel:
        where.append("channel = ?")
        args.append(channel)
    clause = " AND ".join(where)
    total = db.execute(f"SELECT COUNT(*) FROM sessions WHERE {clause}", args).fetchone()[0]
    rows = list(
        db.query(
            f"SELECT * FROM sessions WHERE {clause} ORDER BY started_at DESC, id LIMIT ? OFFSET ?",
            [*args, limit, (page - 1) * limit],
        )
    )
    return {"sessions": _records(db, rows, with_transcripts=False), "total": total}


def dashboard(db: sqlite_utils.Database, owner_id: str) -> dict[str, Any]:
    today = day_start(today_utc())
    total, avg_ms = db.execute(
        "SELECT COUNT(*), AVG(duration_ms) FROM sessions WHERE owner_id = ? AND status != 'pending'", [owner_id]
    ).fetchone()
    sessions_today = db.execute(
        "SELECT COUNT(*) FROM sessions WHERE owner_id = ? AND status != 'pending' AND started_at >= ?",
        [owner_id, today],
    ).fetchone()[0]
    transcripts_today = db.execute(
        "SELECT COUNT(*) FROM sessions s WHERE s.owner_id = ? AND s.started_at >= ? AND EXISTS "
        "(SELECT 1 FROM transcript_items t WHERE t.session_id = s.id)",
        [owner_id, today],
    ).fetchone()[0]
    agents = db.execute("SELECT COUNT(*) FROM agents WHERE owner_id = ? AND deleted_at IS NULL", [owner_id]).fetchone()[
        0
    ]
    return {
        "total_sessions": total,
        "total_agents": agents,
        "avg_duration_ms": avg_ms or 0,
        "sessions_today": sessions_today,
        "transcripts_today": transcripts_today,
    }


def live_calls(db: sqlite_utils.Database, owner_id: str) -> int:
    """Calls of the tenant not ended yet (a handed-out token counts: its caller is on the way). A text chat is no
    call: it holds no line and no worker, so it never takes a call's place."""
    return int(
        db.execute(
            "SELECT COUNT(*) FROM sessions WHERE owner_id = ? AND status != 'ended' AND channel != 'text'", [owner_id]
        ).fetchone()[0]
    )


def reserve_call_slot(db: sqlite_utils.Database, owner_id: str) -> None:
    """Refuse a new call beyond the tenant's ``max_concurrent_calls``; run in the transaction that creates it (on
    PostgreSQL under the tenant's lock until that transaction ends: another node may be creating one now)."""
    lock_for_transaction(db, f"call-slot:{owner_id}")
    limit = (tenants.find(db, owner_id) or {}).get("max_concurrent_calls")
    refuse_beyond_limit(limit, live_calls(db, owner_id))


def count_active(db: sqlite_utils.Database) -> int:
    """Calls in progress now: sessions whose job has started and not ended (for /healthz's activeCalls)."""
    return int(db.execute("SELECT COUNT(*) FROM sessions WHERE status = 'active' AND channel != 'text'").fetchone()[0])
