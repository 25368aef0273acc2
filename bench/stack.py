"""The product under test for the voice benchmarks: provider fakes, a real livekit-server and `voxarena serve` as a
subprocess, all on addresses of the run's network namespace."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator, Sequence
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

from tests.harness.fakes_proc import FakesProcess, start_fakes
from tests.harness.livekit_server import LiveKitServer, start_livekit_server
from tests.harness.procs import free_port
from tests.harness.product import Product, product_env, start_product

KEY = "bench-key"


@contextmanager
def product_stack(
    name: str, script: dict[str, Any], extra_env: dict[str, str]
) -> Iterator[tuple[Product, LiveKitServer, FakesProcess]]:
    with servers(name, script) as (work, server, fakes):
        product = bench_product(work / "product", server, fakes, extra_env)
        try:
            yield product, server, fakes
        finally:
            product.stop()


@contextmanager
def servers(name: str, script: dict[str, Any]) -> Iterator[tuple[Path, LiveKitServer, FakesProcess]]:
    """The fakes and a livekit-server for a run, and its work directory; products are started on them."""
    work = Path(os.environ.get("VOXARENA_BENCH_DIR", "/tmp/voxarena-bench")) / name
    work.mkdir(parents=True, exist_ok=True)
    with ExitStack() as started:  # stopped in reverse order, whatever fails
        fakes = start_fakes(work / "fakes", script=script, api_key=KEY)
        started.callback(fakes.stop)
        server = start_livekit_server(workdir=work / "livekit")
        started.callback(server.stop)
        yield work, server, fakes


def bench_product(
    work: Path,
    server: LiveKitServer,
    fakes: FakesProcess,
    extra_env: dict[str, str],
    *,
    argv_prefix: Sequence[str] = (),
) -> Product:
    """`voxarena serve` on `server` and the fakes; the caller stops it."""
    port = free_port("127.0.0.1")
    env = product_env(
        data_dir=work / f"data-{int(time.time())}",
        port=port,
        livekit=server,
        fakes_urls=fakes.urls,
        api_key=KEY,
        # WARNING keeps a long run's log small; VOXARENA_BENCH_LOG_LEVEL=INFO shows each job's start and end
        extra={"VOXARENA_LOG_LEVEL": os.environ.get("VOXARENA_BENCH_LOG_LEVEL", "WARNING"), **extra_env},
    )
    return start_product(workdir=work, port=port, env=env, argv_prefix=argv_prefix)


async def create_agent(product: Product, name: str, **fields: Any) -> str:
    """A Deepgram -> Gemini -> ElevenLabs agent of the bench user (the providers the fakes serve); returns its id."""
    status, agent = await product.request(
        "POST",
        "/api/agents",
        "bench",
        json={
            "name": name,
            "systemPrompt": "Answer in one word.",
            "sttProvider": "deepgram",
            "llmProvider": "gemini",
            "ttsProvider": "elevenlabs",
            **fields,
        },
    )
    assert status == 201, agent
    return agent["id"]
