"""Which calls are recorded: the agent's `recordingEnabled` when it set one, else its tenant's `recording_default`,
else the product's VOXARENA_RECORDING_DEFAULT, decided by the job's build phase (worker/entrypoint.py) on a real
SQLite file."""

from __future__ import annotations

import pytest
from livekit.agents.utils import http_context

from core.store import agents as agents_repo
from core.store import sessions as sessions_repo
from core.store.db import Store
from tests.api.seed import seed_agent, tenant_of
from tests.test_job_phases import _FakeRoomJob, _job, _keyed
from worker.config import DispatchMeta


@pytest.mark.parametrize(
    ("agent_says", "tenant_says", "product_default", "recorded"),
    [
        (None, None, False, False),
        (None, None, True, True),
        (True, None, False, True),
        (False, None, True, False),
        (None, True, False, True),
        (None, False, True, False),
        (False, True, True, False),
        (True, False, False, True),
    ],
)
async def test_the_agents_own_choice_wins_then_the_tenants_then_the_products_default(
    tmp_path, settings, agent_says, tenant_says, product_default, recorded
):
    store = Store(tmp_path / "voxarena.db")
    try:
        fields = {} if agent_says is None else {"recordingEnabled": agent_says, "recordingNotice": "Recorded."}
        agent = seed_agent(store, "alice", **fields)
        sid = store.write_sync(
            lambda db: sessions_repo.create(db, owner_id=tenant_of("alice"), agent_id=agent["id"], room_name="vx-1")
        )
        row = store.read_sync(agents_repo.get_any_owner, agent["id"])
        ctx = _FakeRoomJob(store, sid)
        meta = DispatchMeta(agent_id=row["id"], session_id=sid, owner_id=row["owner_id"])
        job = _job(ctx, _keyed(settings).with_(recording_default=product_default), store, sid, row, meta)
        job.tenant_recording = tenant_says  # as `load` reads it (tests/api/test_tenants.py: the repository's part)
        async with http_context.open():
            job.build()
        assert job.spec is not None and job.spec.recording is recorded
        assert job.spec.recording_notice == ("Recorded." if agent_says is not None else None)
    finally:
        store.close()
