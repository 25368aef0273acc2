"""`voxarena serve`: the control API and the LiveKit worker in one process and one event loop."""

from __future__ import annotations

import asyncio
import faulthandler
import logging
import signal
import sys

from api.app import create_app
from api.keys import LOOP, NODE
from core.cluster import default_node_id
from core.heap import freeze_startup_objects
from core.recordings import StorageMisconfigured
from core.recordings import storage_for as recordings_storage
from core.secrets import SecretBox
from core.settings import Settings
from core.store.db import Store, prepare, private_dir
from pipelines.pricing import PriceBook

from .connections import AcceptErrorLog, make_runner, raise_fd_limit, start_site
from .job_hosts import LOG_FORMAT
from .recording import keep_leftovers
from .usage_spill import SPILL_DIR, ingest_spilled

log = logging.getLogger("voxarena")


class LoopBlockDetail(logging.Filter):
    """LiveKit's loop monitor puts what tells a block's causes apart in the record's extras, which a plain log
    line drops: the CPU time the job's loop thread used during the block and the garbage collector's share (a
    block of mostly GC, or of little CPU, is not synchronous work of the code it names), and, when it took no
    stack sample, why not. Appended to the message, so the log line carries them."""

    def filter(self, record: logging.LogRecord) -> bool:
        cpu = getattr(record, "cpu_time", None)
        if record.name == "livekit.agents" and isinstance(cpu, float) and not hasattr(record, "voxarena_detail"):
            record.voxarena_detail = True  # once, whichever handlers the record passes
            detail = f"cpu {cpu * 1000:.0f} ms, gc {getattr(record, 'gc_time', 0.0) * 1000:.0f} ms"
            stack = getattr(record, "stack", "")
            if isinstance(stack, str) and stack.startswith("# no sample"):
                detail += f"; {stack[2:].splitlines()[0]}"
            record.msg, record.args = f"{record.getMessage()} [{detail}]", None
        return True


def configure_logging(level: str) -> None:
    logging.basicConfig(
        level=getattr(logging, level.upper(), logging.INFO),
        format=LOG_FORMAT,
        stream=sys.stderr,
    )
    for handler in logging.getLogger().handlers:
        handler.addFilter(LoopBlockDetail())


# How long the close after the drain (the worker, the job processes, the API, the store) may take before the
# process stops itself with every thread's stack in its log (`arm_exit_watchdog`).
SHUTDOWN_GRACE = 15.0


def arm_exit_watchdog(seconds: float) -> None:
    """A process told to stop ends within `seconds`, whatever its event loop does: past them, Python's fault
    handler (a native thread, no event loop, no GIL needed) writes every thread's stack to the log and exits with
    code 1. A shutdown that hangs (a loop blocked for good) then says where, instead of waiting for a supervisor's
    SIGKILL that leaves no trace."""
    log.info("the process ends within %.0f s (its drain, then %.0f s to close)", seconds, SHUTDOWN_GRACE)
    faulthandler.dump_traceback_later(seconds, exit=True, file=sys.stderr)


def serve(settings: Settings) -> int:
    configure_logging(settings.log_level)
    return asyncio.run(run(settings))


async def run(settings: Settings) -> int:
    raise_fd_limit()
    # one name for this node, shared by the API (its heartbeat) and the job processes (the calls they run)
    settings = settings.with_(node_id=settings.node_id or default_node_id())
    if settings.database_url:  # the data dir still holds the embedded issuer's key and the usage spill
        private_dir(settings.data_dir)
    else:
        prepare(settings.database_path)  # a data dir that cannot be written is refused before anything is put in it
    store = Store(settings.database_target, secrets=SecretBox.from_settings(settings.secret_key, settings.data_dir))
    recordings = recordings_storage(settings)
    try:  # a recording bucket that cannot be used is refused now, not at the end of the first recorded call
        await recordings.check()
    except StorageMisconfigured as e:
        log.critical("%s", e)
        store.close()
        return 2
    # before the worker takes a call, none of the files its jobs left is being written: keep them
    await keep_leftovers(store, recordings, PriceBook.load(settings.pricing_file or None))
    # Usage a job could not write (its store was gone) was spilled to disk: into the ledger with it, once.
    await ingest_spilled(store, settings.data_dir / SPILL_DIR)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)

    from .livekit_dev import LocalLiveKitError
    from .runtime import Runtime

    runtime = Runtime(settings, store)
    try:
        settings = await runtime.prepare()
    except LocalLiveKitError as e:
        log.critical("%s", e)
        store.close()
        return 2
    app = create_app(
        settings,
        store=store,
        livekit_health=runtime.health,
        worker_capacity=runtime.capacity if settings.worker_enabled else None,
        worker_slots=runtime.open_slots if settings.worker_enabled else None,
    )
    accept_log = AcceptErrorLog(loop)
    accept_log.install()
    runner = make_runner(app, settings)
    await runner.setup()
    # the imports and the app live as long as the process: out of the collector's full collections (core/heap.py)
    freeze_startup_objects("started")
    app[LOOP].reset()  # the start's own blocks (that collection among them) are not the served loop's lateness
    site, _ = await start_site(runner, settings)
    log.info(
        "control API listening on http://%s:%d, dashboard at http://%s:%d/ (data dir %s)",
        settings.host,
        site.port,
        settings.host,
        site.port,
        settings.data_dir,
    )

    def draining() -> None:
        if not stop.is_set():  # the first signal: from now on the process ends within its drain and a grace
            arm_exit_watchdog(settings.drain_timeout_seconds + SHUTDOWN_GRACE)
        stop.set()
        if NODE in app:  # /health and the node's heartbeat say so while its calls finish
            app[NODE].draining = True

    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, draining)
    exit_code = 0
    try:
        exit_code = await runtime.run_until(stop)
    finally:
        log.info("shutting down")
        await runtime.aclose()
        await runner.cleanup()
        accept_log.uninstall()
        store.close()
    return exit_code
