"""schemathesis against the served OpenAPI document, authenticated, every operation: no server errors, no response
that breaks its declared schema, status code or content type."""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path

import pytest

from tests.api.seed import ANALYSIS, seed_call

CHECKS = "not_a_server_error,response_schema_conformance,status_code_conformance,content_type_conformance"


@pytest.fixture
async def gemini_fake():
    from tests.fakes import FakeProviders

    async with FakeProviders(api_key="fuzz-key") as fakes:
        yield fakes


@pytest.fixture
def settings(settings, gemini_fake):
    # outbound calls configured (their dispatches land on the LiveKit stub) and Gemini pointed at its fake (for
    # /api/ask), so those routes run end to end
    return settings.with_(sip_outbound_trunk_id="ST_fuzz", google_api_key="fuzz-key",
                          google_base_url=gemini_fake.gemini_base_url)


async def test_schemathesis_finds_no_server_errors_or_schema_violations(client, token_for, store, tmp_path):
    seed_call(store, "fuzzer", analysis=ANALYSIS)
    url = str(client.make_url("/openapi.json"))
    report = tmp_path / "schemathesis"
    cmd = [
        str(Path(sys.executable).with_name("schemathesis")), "run", url,
        "--checks", CHECKS,
        "--header", f"Authorization: Bearer {token_for('fuzzer')}",
        "--phases", "examples,coverage,fuzzing",
        "--max-examples", os.environ.get("VOXARENA_SCHEMATHESIS_EXAMPLES", "60"),
        "--workers", "1",
        "--request-timeout", "10",
        "--continue-on-failure",
        "--suppress-health-check", "all",
        "--report", "junit", "--report-dir", str(report),
    ]
    proc = await asyncio.create_subprocess_exec(*cmd, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
                                                env={**os.environ, "NO_COLOR": "1", "SCHEMATHESIS_HOOKS": ""})
    out, _ = await asyncio.wait_for(proc.communicate(), timeout=900)  # ~60 operations on a busy 2-core machine
    text = out.decode(errors="replace")
    print(text[-3000:])
    assert proc.returncode == 0, text[-6000:]
    assert "operations" in text.lower() or "passed" in text.lower(), text[-2000:]
