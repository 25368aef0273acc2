"""Placing and ending outbound calls from the API. The job dials (worker/outbound.py); the API reserves the call,
dispatches the agent with the call in its metadata, and hangs up on request."""

from __future__ import annotations

import logging
import uuid
from typing import Any

from core import phone_calls
from core.dispatch_meta import DispatchMeta
from core.livekit import LiveKitGateway, sip_identity
from core.settings import Settings
from core.store import calls as repo
from core.store import dispatch as dispatch_repo
from core.store import sessions as sessions_repo
from core.store.db import Store

from ..errors import BadGateway, Conflict, Unavailable

log = logging.getLogger("voxarena.outbound")

NO_TRUNK = "outbound calls need a LiveKit SIP outbound trunk: set VOXARENA_SIP_OUTBOUND_TRUNK_ID"


async def place(
    store: Store,
    gateway: LiveKitGateway,
    settings: Settings,
    *,
    owner_id: str,
    agent_id: str,
    phone_number: str,
    callback_url: str | None,
    context: dict[str, Any] | None = None,
    campaign: str | None = None,
    call_id: str | None = None,
) -> dict[str, Any]:
    """Reserves the call (within the tenant's call limit: LimitError) and dispatches its agent. `call_id` is given
    by a campaign's dialer, which records it before the dial (core/store/campaigns.py `claim`)."""
    if not settings.sip_outbound_trunk_id:
        raise Unavailable(NO_TRUNK)
    call_id = call_id or f"call_{uuid.uuid4().hex[:20]}"
    session_id = str(uuid.uuid4())
    room = f"vx-out-{uuid.uuid4().hex[:12]}"

    def reserve(db: Any) -> dict[str, Any]:
        sessions_repo.reserve_call_slot(db, owner_id)
        sessions_repo.create(
            db,
            owner_id=owner_id,
            agent_id=agent_id,
            session_id=session_id,
            room_name=room,
            direction="outbound",
            phone_number=phone_number,
            call_status="RINGING",
            context=context,
            campaign=campaign,
        )
        return repo.create(
            db,
            owner_id,
            call_id=call_id,
            agent_id=agent_id,
            session_id=session_id,
            room_name=room,
            phone_number=phone_number,
            callback_url=callback_url,
        )

    row = await store.write(reserve)
    metadata = DispatchMeta(
        agent_id=agent_id,
        session_id=session_id,
        owner_id=owner_id,
        direction="outbound",
        phone_number=phone_number,
        call_id=call_id,
    )
    try:
        dispatch_id = await gateway.dispatch(room=room, metadata=metadata)
        await store.write(dispatch_repo.record_dispatch, session_id, dispatch_id)
    except Exception as e:
        reason = str(e)
        log.error("call %s: agent dispatch to room %s failed: %s", call_id, room, reason)

        def failed(db: Any) -> None:
            repo.transition(db, call_id, "FAILED", end_reason="dispatch_failed")
            sessions_repo.end(db, session_id, reason="dispatch_failed", error=reason)

        await store.write(failed)
        raise Unavailable(f"could not dispatch the agent through LiveKit: {reason}") from None
    return row


async def hang_up(store: Store, gateway: LiveKitGateway, *, owner_id: str, call_id: str) -> None:
    """Ends a live call: the SIP participant leaves (the callee gets a BYE), the room closes, and the call is
    COMPLETED if it was answered, FAILED (``canceled``) if it was still ringing."""
    row = await store.read(repo.get, owner_id, call_id)
    if row["status"] in phone_calls.TERMINAL:
        raise Conflict(f"call {call_id} has already ended ({row['status']})")

    def ended(db: Any) -> None:
        current = repo.get(db, owner_id, call_id)
        status = "COMPLETED" if current["status"] == "ANSWERED" else "FAILED"
        repo.transition(db, call_id, status, end_reason="ended_by_api" if status == "COMPLETED" else "canceled")

    await store.write(ended)
    try:
        await gateway.remove_participant(row["room_name"], sip_identity(call_id))
        await gateway.delete_room(row["room_name"])
    except Exception as e:  # the call is ended here; say plainly that the line may still be up
        log.error("call %s: ended, but LiveKit could not hang it up: %s", call_id, e)
        raise BadGateway(f"call {call_id} is marked ended, but LiveKit could not hang it up: {e}") from None
