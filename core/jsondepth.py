"""How deeply JSON nests, measured on the raw text before anything parses it.

CPython's ``json`` and pydantic recurse once per level: a body nested a few thousand levels deep raises
RecursionError inside ``json.loads`` (a 500 with a traceback), and one a few hundred deep parses and stores but can
never be serialised again, so every list holding it fails. One fixed limit, checked without recursion on the raw
text of every request body and socket frame, keeps both out; rows stored before the limit existed render degraded
(``load_stored``).
"""

from __future__ import annotations

import json
import logging
import re
from typing import Any

log = logging.getLogger("voxarena.api")

MAX_DEPTH = 32

# A JSON string (escapes included); brackets inside one do not nest.
_STRING = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"')
_NOT_BRACKETS = bytes(b for b in range(256) if b not in b"[]{}")
_OPENERS = (ord("["), ord("{"))


class TooDeep(ValueError):
    def __init__(self, limit: int = MAX_DEPTH) -> None:
        super().__init__(f"JSON nests deeper than {limit} levels")


def too_deep(raw: bytes | str, limit: int = MAX_DEPTH) -> bool:
    """True when some point of ``raw`` is inside more than ``limit`` open arrays/objects. Malformed text is judged
    only as far as it nests (the parser refuses the rest)."""
    data = raw.encode("utf-8", "surrogatepass") if isinstance(raw, str) else raw
    if data.count(b"[") + data.count(b"{") <= limit:  # nearly every body: no scan at all
        return False
    brackets = _STRING.sub(b"", data).translate(None, _NOT_BRACKETS)
    depth = 0
    for c in brackets:
        if c in _OPENERS:
            depth += 1
            if depth > limit:
                return True
        else:
            depth -= 1
            if depth < 0:  # a closer with nothing open: the parser stops here, before any deeper level
                return False
    return False


def loads(raw: bytes | str, **kwargs: Any) -> Any:
    """``json.loads`` that refuses (TooDeep, a ValueError) what nests deeper than MAX_DEPTH, before recursing."""
    if too_deep(raw):
        raise TooDeep()
    return json.loads(raw, **kwargs)


def load_stored(text: str | None, *, what: str) -> Any:
    """A free-form JSON column of a stored row, or None (with a log line) when it nests deeper than MAX_DEPTH: such a
    row was stored before bodies were checked and cannot be serialised; the row still lists, with this field null."""
    if not text:
        return None
    if too_deep(text):
        log.warning("%s nests deeper than %d levels; rendered as null", what, MAX_DEPTH)
        return None
    return json.loads(text)
