"""Transcripts already read, validated into their response models, by session.

``GET /api/sessions`` carries every listed session's transcript (001's Session), as ``GET /api/sessions/{id}`` does
its one, so each read used to read all their items again, parse their metrics and validate each into `TranscriptItem`:
~11 ms of CPU for a page of six calls of 430 items (bench/README.md, section 2), most of it holding the interpreter
the event loop needs. Items are only ever appended, so a session's transcript version (its number of items and newest
item's id, from one grouped read) says whether a kept transcript is still the transcript: a hit costs neither the
items' read nor their validation (pydantic takes a `TranscriptItem` instance as it is). The version comes from the
store on every read, so the cache is exact on every node of a cluster, with no invalidation to miss.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from typing import Any

import sqlite_utils
from pydantic import TypeAdapter

from core.store import sessions as repo

from ..schemas.sessions import TranscriptItem

_ITEMS = TypeAdapter(list[TranscriptItem])
Version = tuple[int, int]


class TranscriptCache:
    """Validated transcripts by session id with the version they were read at, least recently used out first,
    within `max_items` items in all (a transcript longer than a quarter of that is not kept). Used on the store's
    reader threads, hence the lock."""

    def __init__(self, *, max_items: int = 5_000) -> None:
        self.max_items = max_items
        self._entries: OrderedDict[str, tuple[Version, list[TranscriptItem]]] = OrderedDict()
        self._items = 0
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._entries)

    @property
    def items(self) -> int:
        return self._items

    def get(self, session_id: str, version: Version) -> list[TranscriptItem] | None:
        with self._lock:
            entry = self._entries.get(session_id)
            if entry is None or entry[0] != version:
                return None
            self._entries.move_to_end(session_id)
            return entry[1]

    def put(self, session_id: str, version: Version, items: list[TranscriptItem]) -> None:
        with self._lock:
            self._drop(session_id)
            if len(items) > self.max_items // 4:
                return
            self._entries[session_id] = (version, items)
            self._items += len(items)
            while self._items > self.max_items:
                self._drop(next(iter(self._entries)))

    def _drop(self, session_id: str) -> None:
        entry = self._entries.pop(session_id, None)
        if entry is not None:
            self._items -= len(entry[1])


def list_sessions(cache: TranscriptCache, db: sqlite_utils.Database, owner_id: str, **query: Any) -> dict[str, Any]:
    """`repo.list_` with each session's transcript as validated items: the kept ones from `cache`, the rest read
    and validated here, then kept. Runs on a reader thread."""
    listed = repo.list_(db, owner_id, **query)
    _with_transcripts(cache, db, listed["sessions"])
    return listed


def get_session(cache: TranscriptCache, db: sqlite_utils.Database, owner_id: str, session_id: str) -> dict[str, Any]:
    """`repo.get` with its transcript kept the same way (the dashboard reads a live call's session again and
    again). Runs on a reader thread."""
    rec = repo.get(db, owner_id, session_id, with_transcript=False)
    _with_transcripts(cache, db, [rec])
    return rec


def _with_transcripts(cache: TranscriptCache, db: sqlite_utils.Database, records: list[dict[str, Any]]) -> None:
    missing = []
    for rec in records:
        rec["transcript"] = cache.get(rec["id"], rec["transcript_version"])
        if rec["transcript"] is None:
            missing.append(rec["id"])
    read = repo.transcripts(db, missing)
    for rec in records:
        if rec["id"] in read:
            # kept under the version of the items read: an item appended since the records' versions were read
            # makes this a newer version, never a wrong one
            version, items = read[rec["id"]]
            rec["transcript"] = _ITEMS.validate_python(items)
            cache.put(rec["id"], version, rec["transcript"])
