"""A job loads only what the product dispatched, against a real livekit-server: whoever holds the key of a LiveKit
server a worker joined (a tenant, for its own server) can dispatch jobs with any metadata; one naming another
tenant's agent, unsigned or with a signed call's metadata altered, opens no session and is refused in the log,
while the product's own signed dispatch runs the call."""

from __future__ import annotations

import asyncio
import json
import time
import uuid

from livekit import api as lk

from tests.api.seed import tenant_of
from tests.e2e.test_failures import _agent, _greeted
from tests.harness.client import AudioRoomClient

REFUSED = "refused: dispatch metadata"


async def _forge(server, metadata: str) -> AudioRoomClient:
    """A caller in a fresh room of the server and a job dispatched into it by the key's holder, not the product."""
    room = f"forged-{uuid.uuid4().hex[:8]}"
    caller = AudioRoomClient(server.url, server.token("bob-caller", room), identity="bob-caller")
    await caller.connect()
    async with server.api() as api:
        await api.agent_dispatch.create_dispatch(
            lk.CreateAgentDispatchRequest(agent_name="voxarena", room=room, metadata=metadata)
        )
    return caller


async def test_a_job_dispatched_with_forged_metadata_naming_another_tenants_agent_opens_no_session(voice_stack):
    product, server, _ = voice_stack
    alice = f"alice-{uuid.uuid4().hex[:8]}"  # a tenant of this test alone: the stack is shared with other modules
    victim = await _agent(product, user=alice)
    # bob's own call, dispatched by the product: signed, it runs
    client, tok = await product.join(await _agent(product, user="bob"), user="bob")
    try:
        await _greeted(client)
        async with server.api() as api:
            dispatches = await api.agent_dispatch.list_dispatch(tok["roomName"])
        signed = next(d for d in dispatches if tok["sessionId"] in d.metadata)
    finally:
        await client.disconnect()
    seen = product.log_tail(2000).count(REFUSED)

    unsigned = json.dumps({"agent_id": victim, "owner_id": tenant_of(alice), "direction": "inbound"})
    altered = json.loads(signed.metadata)
    altered.update(agent_id=victim, owner_id=tenant_of(alice), session_id=str(uuid.uuid4()))
    callers = [await _forge(server, unsigned), await _forge(server, json.dumps(altered))]
    try:
        deadline = time.monotonic() + 45
        while product.log_tail(2000).count(REFUSED) < seen + 2 and time.monotonic() < deadline:
            await asyncio.sleep(0.25)
        log = product.log_tail(2000)
        assert log.count(REFUSED) == seen + 2, [line for line in log.splitlines() if "voxarena.job" in line]
        assert "refused: dispatch metadata is not signed by this product" in log
        assert "refused: dispatch metadata signature does not verify" in log
    finally:
        for caller in callers:
            await caller.disconnect()
    status, sessions = await product.request("GET", "/api/sessions", alice)
    assert status == 200 and sessions["total"] == 0, sessions  # nothing ran, or was billed, as alice's
