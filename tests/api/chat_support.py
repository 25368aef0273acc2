"""What the text-conversation tests share: the app wired to an in-process Gemini fake, and ways to read what the
fake was asked."""

from __future__ import annotations

import asyncio
import time

import pytest

from core.settings import Settings
from tests.api.seed import ANALYSIS
from tests.conftest import LIVEKIT_KEY, LIVEKIT_SECRET
from tests.fakes import FakeProviders

FAKE_KEY = "fake-gemini-key"


@pytest.fixture
def idle_seconds() -> float:
    return 300.0


@pytest.fixture
async def fakes(monkeypatch):
    async with FakeProviders(api_key=FAKE_KEY, script={"llm_default_json": ANALYSIS}) as f:
        monkeypatch.setenv("GOOGLE_GEMINI_BASE_URL", f.gemini_base_url)
        yield f


@pytest.fixture
def settings(tmp_path, twirp_stub, fakes, idle_seconds) -> Settings:
    server, _ = twirp_stub
    return Settings(
        data_dir=tmp_path / "data",
        host="127.0.0.1",
        port=0,
        worker_enabled=False,
        livekit_url=str(server.make_url("")).rstrip("/").replace("http://", "ws://"),
        livekit_api_key=LIVEKIT_KEY,
        livekit_api_secret=LIVEKIT_SECRET,
        rate_limit_rps=1_000_000.0,
        google_api_key=FAKE_KEY,
        google_base_url=fakes.gemini_base_url,
        openai_api_key=FAKE_KEY,
        openai_base_url=fakes.openai_base_url,  # a fallback LLM for agents
        text_session_idle_seconds=idle_seconds,
    )


def llm_requests(fakes) -> list[dict]:
    """What the Gemini fake was asked (the chat requests, not structured analysis ones)."""
    return [r["request"] for r in fakes.state.log["gemini"] if not r["json_mode"]]


def texts(request: dict) -> list[tuple[str, str]]:
    return [(c["role"], "".join(p.get("text", "") for p in c["parts"])) for c in request["contents"]]


async def wait_session(client, auth, sid: str, predicate, *, timeout: float = 20.0, user: str = "alice") -> dict:
    deadline = time.monotonic() + timeout
    while True:
        r = await client.get(f"/api/sessions/{sid}", headers=auth(user))
        body = await r.json()
        if r.status == 200 and predicate(body):
            return body
        if time.monotonic() > deadline:
            raise AssertionError(f"session {sid} never got there: {body}")
        await asyncio.sleep(0.05)
