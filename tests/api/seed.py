"""Seeding through the same repositories the worker writes with."""

from __future__ import annotations

from api.schemas.agents import storage
from core.store import agents, sessions
from core.store.db import Store
from core.store.tenants import personal_tenant_id

AGENT_WIRE = {
    "name": "A",
    "systemPrompt": "p",
    "sttProvider": "deepgram",
    "llmProvider": "gemini",
    "ttsProvider": "elevenlabs",
    "firstMessageMode": "assistant_waits",
}


def tenant_of(user: str) -> str:
    """The personal tenant a user's requests act in when they send no X-Tenant-ID."""
    return personal_tenant_id(user)


def seed_agent(store: Store, user: str, **changes) -> dict:
    return store.write_sync(agents.create, tenant_of(user), storage({**AGENT_WIRE, **changes}))


ANALYSIS = {
    "summary": "Caller asked about hours.",
    "sentiment": "positive",
    "sentiment_score": 0.8,
    "topics": ["hours"],
    "outcome": "resolved",
    "action_items": ["send schedule"],
}


def seed_call(
    store: Store,
    owner: str,
    *,
    started_at: str = "2026-01-10T10:00:00.000000Z",
    ended_at: str | None = "2026-01-10T10:01:05.400000Z",
    direction: str = "inbound",
    agent_id: str | None = None,
    analysis: dict | None = None,
    turns: int = 1,
) -> tuple[str, str]:
    """Seeds a call in the personal tenant of the user ``owner``."""
    if agent_id is None:
        agent_id = seed_agent(store, owner)["id"]
    owner = tenant_of(owner)
    sid = store.write_sync(
        lambda db: sessions.create(
            db,
            owner_id=owner,
            agent_id=agent_id,
            room_name=f"room-{started_at}",
            direction=direction,
            status="active",
            started_at=started_at,
        )
    )
    for i in range(turns):
        store.write_sync(
            lambda db, i=i: sessions.append_item(
                db, session_id=sid, item_key=f"u{i}", speaker="USER", content=f"question {i}", timestamp=started_at
            )
        )
        store.write_sync(
            lambda db, i=i: sessions.append_item(
                db,
                session_id=sid,
                item_key=f"a{i}",
                speaker="AGENT",
                content=f"answer {i}",
                timestamp=started_at,
                metrics={"end_of_turn_delay": 0.2, "llm_ttft": 0.3, "tts_ttfb": 0.15, "e2e_latency": 0.7},
            )
        )
    if ended_at:
        store.write_sync(lambda db: sessions.end(db, sid, reason="participant_left", ended_at=ended_at))
    if analysis:
        store.write_sync(lambda db: sessions.store_analysis(db, sid, result=analysis, error=None, attempts=1))
    return agent_id, sid
