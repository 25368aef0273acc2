"""Usage that could not reach the ledger, kept in a durable per-job file until the next start ingests it.

One JSON object per line, appended and fsync'd; a crash mid-append leaves at most a torn last line, which ingest
skips (and reports). Ingest records every event through the ledger, idempotently by key, and deletes a file only
after its events are committed: running it twice, or on a file a crash left behind, adds nothing."""

from __future__ import annotations

import asyncio
import json
import logging
import os
from decimal import Decimal
from pathlib import Path
from typing import Any

from core.store import usage as ledger
from core.store.db import Store
from core.store.timefmt import to_iso

log = logging.getLogger("voxarena.metering")

SPILL_DIR = "usage-spill"


def spill_path(data_dir: Path, job_id: str) -> Path:
    safe = "".join(c if c.isalnum() or c in "-_" else "_" for c in job_id) or "job"
    return data_dir / SPILL_DIR / f"{safe}.jsonl"


def _plain(value: Any) -> Any:
    if isinstance(value, Decimal):
        return str(value)  # exact: quantities and unit costs round-trip as written
    if hasattr(value, "isoformat"):
        return to_iso(value)
    return value


def spill(path: Path, rows: list[dict[str, Any]]) -> None:
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)  # usage rows name tenants and calls
    data = "".join(json.dumps({k: _plain(v) for k, v in row.items()}, sort_keys=True) + "\n" for row in rows)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    try:
        os.write(fd, data.encode())
        os.fsync(fd)
    finally:
        os.close(fd)


def read_spill(path: Path) -> tuple[list[dict[str, Any]], int]:
    """The spilled events of one file, and how many lines were unreadable (a torn last write)."""
    rows, bad = [], 0
    for line in path.read_text(errors="replace").splitlines():
        if not line.strip():
            continue
        try:
            rows.append(json.loads(line))
        except ValueError:
            bad += 1
    return rows, bad


def _spilled(spill_dir: Path) -> list[Path]:
    return sorted(spill_dir.glob("*.jsonl")) if spill_dir.is_dir() else []


async def ingest_spilled(store: Store, spill_dir: Path) -> int:
    """Record every spilled event (once, by key) and remove the files; returns how many events were new."""
    new = 0
    for path in await asyncio.to_thread(_spilled, spill_dir):  # files off the event loop
        rows, bad = await asyncio.to_thread(read_spill, path)
        if bad:
            log.warning("%s: %d unreadable line(s) skipped (a write torn by a crash)", path, bad)
        flags = await store.write(ledger.record_events, rows) if rows else []
        added = sum(flags)
        new += added
        await asyncio.to_thread(path.unlink)
        log.info(
            "ingested %s: %d spilled usage events, %d new, %d already in the ledger",
            path.name,
            len(rows),
            added,
            len(rows) - added,
        )
    return new
