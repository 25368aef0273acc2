"""The control API's socket under connections it did not ask for: a thousand idle connections are held without
starving another client and are closed after the idle timeout; one address is capped; the fd limit is raised; and
running out of descriptors anyway logs a line per interval, not a traceback per refused accept."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import resource
import socket
import subprocess
import sys
import time
from pathlib import Path

import aiohttp
import pytest

from api.app import create_app
from core.settings import Settings
from worker.connections import make_runner, raise_fd_limit, start_site

ROOT = Path(__file__).resolve().parents[1]
IDLE = 1000


async def _serve(settings: Settings, store):
    runner = make_runner(create_app(settings, store=store), settings)
    await runner.setup()
    site, cap = await start_site(runner, settings)
    return runner, site, cap


async def _open_idle(port: int, n: int, *, source: str = "127.0.0.1"):
    conns = []
    for start in range(0, n, 100):  # in steps the listen backlog takes without dropping SYNs
        conns += await asyncio.gather(
            *(
                asyncio.open_connection("127.0.0.1", port, local_addr=(source, 0))
                for _ in range(start, min(n, start + 100))
            )
        )
    return conns


async def _closed_by_server(reader: asyncio.StreamReader) -> bytes:
    return await reader.read()  # everything until EOF


@pytest.fixture
def api_settings(settings: Settings) -> Settings:
    return settings.with_(port=0, idle_timeout_seconds=3.0, max_connections_per_address=0)


async def test_a_thousand_idle_connections_are_held_without_starving_others_then_closed(api_settings, store):
    raise_fd_limit()
    # opening a thousand connections on a loaded 2-core machine took over 3 s in CI (the first ones had timed out
    # before the count): the timeout here outlasts the opening, the behaviour is the same
    api_settings = api_settings.with_(idle_timeout_seconds=12.0)
    runner, site, _ = await _serve(api_settings, store)
    conns = []
    try:
        opened = time.monotonic()
        conns = await _open_idle(site.port, IDLE)
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(local_addr=("127.0.0.2", 0))) as other:
            for _ in range(20):
                async with other.get(
                    f"http://127.0.0.1:{site.port}/health", timeout=aiohttp.ClientTimeout(total=5)
                ) as resp:
                    assert resp.status == 200
        assert len(runner.server.connections) >= IDLE  # all held meanwhile
        # every idle one is closed by the server once the timeout passes, never answered
        leftovers = await asyncio.wait_for(asyncio.gather(*(_closed_by_server(r) for r, _ in conns)), timeout=30)
        assert set(leftovers) == {b""}
        assert time.monotonic() - opened >= api_settings.idle_timeout_seconds
    finally:
        for _, w in conns:
            w.close()
        await runner.cleanup()


async def test_a_connection_that_sends_half_its_headers_is_closed_after_the_timeout(api_settings, store):
    runner, site, _ = await _serve(api_settings, store)
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", site.port)
        writer.write(b"GET /health HTTP/1.1\r\nHost: x\r\n")  # and never the blank line
        started = time.monotonic()
        assert await asyncio.wait_for(reader.read(), timeout=15) == b""
        assert time.monotonic() - started >= api_settings.idle_timeout_seconds - 0.5
        writer.close()
    finally:
        await runner.cleanup()


async def test_one_address_holds_at_most_the_cap_and_others_are_unaffected(api_settings, store):
    settings = api_settings.with_(max_connections_per_address=5, idle_timeout_seconds=30.0)
    runner, site, cap = await _serve(settings, store)
    held = []
    try:
        held = await _open_idle(site.port, 5)
        reader, writer = await asyncio.open_connection("127.0.0.1", site.port)
        refused = await asyncio.wait_for(reader.read(), timeout=10)
        writer.close()
        assert refused.startswith(b"HTTP/1.1 429 ") and b'"type":"connection_limit"' in refused, refused
        assert cap.refused == 1

        async with (
            aiohttp.ClientSession(connector=aiohttp.TCPConnector(local_addr=("127.0.0.2", 0))) as other,
            other.get(f"http://127.0.0.1:{site.port}/health") as resp,
        ):
            assert resp.status == 200

        held.pop()[1].close()  # one closed: one more may open
        deadline = time.monotonic() + 10
        while cap.open.get("127.0.0.1", 0) >= 5:
            assert time.monotonic() < deadline, cap.open
            await asyncio.sleep(0.02)
        async with aiohttp.ClientSession() as same, same.get(f"http://127.0.0.1:{site.port}/health") as resp:
            assert resp.status == 200
    finally:
        for _, w in held:
            w.close()
        await runner.cleanup()


def test_the_soft_open_files_limit_is_raised_to_the_hard_one():
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    lowered = min(512, hard)
    resource.setrlimit(resource.RLIMIT_NOFILE, (lowered, hard))
    try:
        assert raise_fd_limit() == (hard, hard)
        assert resource.getrlimit(resource.RLIMIT_NOFILE) == (hard, hard)
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, hard), hard))


def _limit_files(n: int):
    return lambda: resource.setrlimit(resource.RLIMIT_NOFILE, (n, n))


async def test_running_out_of_descriptors_logs_a_line_per_interval_and_the_server_recovers(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("VOXARENA_")}
    env.update(PYTHONPATH=str(ROOT), VOXARENA_IDLE_TIMEOUT_SECONDS="60", VOXARENA_MAX_CONNECTIONS_PER_ADDRESS="0")
    log_path = tmp_path / "serve.log"
    with open(log_path, "wb") as log_file:
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "worker",
                "serve",
                "--no-worker",
                "--port",
                "0",
                "--data-dir",
                str(tmp_path / "data"),
            ],
            stdout=log_file,
            stderr=subprocess.STDOUT,
            env=env,
            preexec_fn=_limit_files(200),
        )
    try:
        deadline = time.monotonic() + 120
        while not (m := re.search(r"listening on http://127\.0\.0\.1:(\d+)", log_path.read_text())):
            assert proc.poll() is None and time.monotonic() < deadline, log_path.read_text()
            await asyncio.sleep(0.1)
        port = int(m.group(1))
        socks = []
        for _ in range(400):  # twice what the server may open: the rest wait in the backlog or are refused
            s = socket.socket()
            s.setblocking(False)
            with contextlib.suppress(BlockingIOError):
                s.connect(("127.0.0.1", port))
            socks.append(s)
        deadline = time.monotonic() + 30
        while "cannot accept connections" not in log_path.read_text():
            assert time.monotonic() < deadline, log_path.read_text()[-2000:]
            await asyncio.sleep(0.1)
        await asyncio.sleep(4)  # a flood of accept failures meanwhile (several per second without the cap on logs)
        text = log_path.read_text()
        assert text.count("cannot accept connections") <= 2, text[-3000:]
        assert "Traceback" not in text, text[-3000:]
        for s in socks:
            s.close()
        deadline = time.monotonic() + 30
        while True:  # the descriptors come back: the server answers again
            try:
                async with (
                    aiohttp.ClientSession() as http,
                    http.get(f"http://127.0.0.1:{port}/health", timeout=aiohttp.ClientTimeout(total=3)) as resp,
                ):
                    if resp.status == 200:
                        break
            except (TimeoutError, aiohttp.ClientError):
                pass
            assert time.monotonic() < deadline, log_path.read_text()[-2000:]
            await asyncio.sleep(0.2)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@pytest.mark.parametrize(
    "request_bytes, reason",
    [
        (
            b"GET /api/analytics/summary?tenant_id=" + b"x" * 9000 + b" HTTP/1.1\r\nHost: x\r\n\r\n",
            "longer than 8190 bytes",
        ),
        (b"GET /health HTTP/1.1\r\nHost: x\r\nX-Probe: a\x00b\r\n\r\n", "Invalid header value char"),
        (b"GET /health HTTP/1.1\r\nHost: x\r\nX-Big: " + b"y" * 9000 + b"\r\n\r\n", "longer than 8190 bytes"),
    ],
)
async def test_a_request_the_parser_refuses_gets_the_one_error_body(api_settings, store, request_bytes, reason):
    # aiohttp answers these itself, before any route or middleware, in text/plain with the parser's text
    runner, site, _ = await _serve(api_settings, store)
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", site.port)
        writer.write(request_bytes)
        raw = await asyncio.wait_for(reader.read(), timeout=10)  # the server closes after answering
        writer.close()
        head, _, body = raw.partition(b"\r\n\r\n")
        assert re.match(rb"HTTP/1\.[01] 400 ", head), raw[:300]
        assert b"Content-Type: application/json" in head, head
        parsed = json.loads(body)
        assert parsed["status_code"] == 400 and parsed["type"] == "bad_request", parsed
        assert reason in parsed["detail"] and parsed["error"] == parsed["details"] == parsed["detail"], parsed
        assert b"x" * 200 not in body and b"y" * 200 not in body  # what was sent is not echoed
    finally:
        await runner.cleanup()
