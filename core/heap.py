"""The garbage collector's view of a long-lived process.

A full (generation 2) collection walks every container object the process holds. After start, the API + worker
process holds ~330,000 of them (the imports: LiveKit, its plugins, google-genai's pydantic models, aiohttp; the app),
and a full collection over them took ~150 ms on a 2-vCPU VM: under load it ran every few seconds, each time
stopping the event loop that serves the API and the worker (bench/README.md, section 2). Nearly all of them live as
long as the process, so once started the process moves them out of the collector's sight (``gc.freeze``, what
LiveKit already does in its forkserver before forking job processes); a collection then walks only what was made
since. An object frozen and dropped later is never freed, so this runs only once the start's own garbage is gone.
"""

from __future__ import annotations

import gc
import logging
import time

log = logging.getLogger("voxarena.heap")

_freezing = False
_frozen = 0  # counted as they are frozen: gc.get_freeze_count() walks the whole frozen list (~30 ms for 330,000)


def freezing() -> bool:
    """True while `freeze_startup_objects` collects: its own collection is not one of the process's pauses."""
    return _freezing


def frozen_objects() -> int:
    """How many objects the process froze (as of its last freeze), without walking them."""
    return _frozen


def freeze_startup_objects(why: str) -> int:
    """Collect what the start left, then freeze every object alive now; returns how many are frozen in all."""
    global _freezing, _frozen
    _freezing = True
    started = time.perf_counter()
    try:
        gc.collect()
        moving = len(gc.get_objects())  # every object the generations hold: what the freeze moves
        gc.freeze()
    finally:
        _freezing = False
    _frozen = frozen = _frozen + moving
    log.info(
        "%s: %d objects frozen out of the garbage collector's full collections (%.0f ms)",
        why,
        frozen,
        (time.perf_counter() - started) * 1000,
    )
    return frozen
