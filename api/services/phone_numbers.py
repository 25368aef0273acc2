"""Phone numbers for inbound calls. The product keeps LiveKit in step itself: registering a number creates its SIP
inbound trunk and the trunk's dispatch rule, which refuses the number's calls until an agent is assigned; assigning
points the rule at the agent and releasing points it back at the refusal (both in place); unregistering deletes
both. LiveKit first, then the store; a store write that fails undoes the LiveKit change, so nothing is half-written.

A registered number always has a rule because livekit-server drops a call that matches no rule (as a flood: the
carrier hears ringing and then nothing until its own timeout). The refusing rule dispatches the worker with
`refusal_metadata`, and the job hangs up on the caller before livekit-sip answers: the carrier gets a failure final
response at once. A number not registered here has no trunk, and LiveKit drops its calls."""

from __future__ import annotations

import logging
from typing import Any

from core.dispatch_meta import DispatchMeta
from core.livekit import LiveKitGateway
from core.settings import Settings
from core.store import phone_numbers as repo
from core.store.db import Store

from ..errors import BadGateway, Conflict

log = logging.getLogger("voxarena.numbers")


def rule_metadata(number: dict[str, Any], agent_id: str) -> DispatchMeta:
    """The job's dispatch metadata for the number's calls (no session id: the job opens the session)."""
    return DispatchMeta(
        agent_id=agent_id, owner_id=number["owner_id"], direction="inbound", phone_number_id=number["id"]
    )


def refusal_metadata(number: dict[str, Any]) -> DispatchMeta:
    """The dispatch metadata of a number no agent is assigned to: no agent, the job refuses the call."""
    return DispatchMeta(
        owner_id=number["owner_id"], direction="inbound", phone_number_id=number["id"], refuse="number_not_assigned"
    )


def _metadata(number: dict[str, Any], agent_id: str | None) -> DispatchMeta:
    return rule_metadata(number, agent_id) if agent_id else refusal_metadata(number)


def _rule_name(number: dict[str, Any]) -> str:
    return f"voxarena {number['phone_number']} ({number['id']})"


async def _undo(what: str, undo: Any) -> None:
    """Best effort: the caller's request has already failed; a failed undo is logged with what is left behind."""
    try:
        await undo
    except Exception as e:
        log.error("could not undo %s in LiveKit: %s", what, e)


async def register(
    store: Store,
    gateway: LiveKitGateway,
    settings: Settings,
    *,
    owner_id: str,
    phone_number: str,
    friendly_name: str | None,
    capabilities: list[str],
) -> dict[str, Any]:
    if await store.read(repo.taken, phone_number):
        raise Conflict(f"phone number {phone_number} is already registered")
    try:
        trunk_id = await gateway.create_inbound_trunk(
            number=phone_number,
            name=f"voxarena {phone_number}",
            allowed_addresses=settings.sip_inbound_allowed_addresses,
            auth_username=settings.sip_inbound_auth_username,
            auth_password=settings.sip_inbound_auth_password,
            ring_timeout=settings.sip_inbound_ring_timeout_seconds,
            max_call_seconds=settings.sip_max_call_seconds,
        )
    except Exception as e:
        raise BadGateway(f"LiveKit could not create the inbound trunk for {phone_number}: {e}") from None
    number = {"id": repo.new_id(), "owner_id": owner_id, "phone_number": phone_number}
    try:
        rule_id = await gateway.create_dispatch_rule(
            trunk_id=trunk_id, name=_rule_name(number), metadata=refusal_metadata(number)
        )
    except Exception as e:
        await _undo(f"trunk {trunk_id} of {phone_number}", gateway.delete_trunk(trunk_id))
        raise BadGateway(f"LiveKit could not create the dispatch rule for {phone_number}: {e}") from None
    try:
        row = await store.write(
            lambda db: repo.create(
                db,
                owner_id,
                phone_number=phone_number,
                friendly_name=friendly_name,
                capabilities=capabilities,
                trunk_id=trunk_id,
                number_id=number["id"],
                dispatch_rule_id=rule_id,
            )
        )
    except Exception:  # a cancelled write is not undone: it may have committed
        await _undo(f"rule {rule_id} of {phone_number}", gateway.delete_dispatch_rule(rule_id))
        await _undo(f"trunk {trunk_id} of {phone_number}", gateway.delete_trunk(trunk_id))
        raise
    log.info(
        "phone number %s registered for tenant %s (trunk %s, rule %s refusing its calls until an agent is assigned)",
        phone_number,
        owner_id,
        trunk_id,
        rule_id,
    )
    return row


async def assign(
    store: Store, gateway: LiveKitGateway, *, owner_id: str, phone_number: str, agent_id: str
) -> dict[str, Any]:
    """The number's calls dispatch `agent_id` (the caller has checked the agent is the tenant's and takes calls)."""
    number = await store.read(repo.get, owner_id, phone_number)
    trunk, name = number["trunk_id"], _rule_name(number)
    old_rule, old_agent = number["dispatch_rule_id"], number["agent_id"]
    try:
        if old_rule:
            rule_id = await gateway.replace_dispatch_rule(
                old_rule, trunk_id=trunk, name=name, metadata=rule_metadata(number, agent_id)
            )
        else:
            rule_id = await gateway.create_dispatch_rule(
                trunk_id=trunk, name=name, metadata=rule_metadata(number, agent_id)
            )
    except Exception as e:
        raise BadGateway(f"LiveKit could not route {phone_number} to the agent: {e}") from None
    try:
        row = await store.write(
            lambda db: repo.assign(db, owner_id, phone_number, agent_id=agent_id, dispatch_rule_id=rule_id)
        )
    except Exception:  # a cancelled write is not undone: it may have committed
        if old_rule and rule_id == old_rule:  # the rule dispatches as before: the previous agent, or the refusal
            await _undo(
                f"rule {rule_id} of {phone_number}",
                gateway.replace_dispatch_rule(
                    rule_id, trunk_id=trunk, name=name, metadata=_metadata(number, old_agent)
                ),
            )
        else:
            await _undo(f"rule {rule_id} of {phone_number}", gateway.delete_dispatch_rule(rule_id))
        raise
    log.info("phone number %s assigned to agent %s (rule %s)", phone_number, agent_id, rule_id)
    return row


async def release(store: Store, gateway: LiveKitGateway, *, owner_id: str, phone_number: str) -> dict[str, Any]:
    """No agent answers the number any more: its rule is replaced in place by the refusing one (created if it is
    gone). If the store write fails after that, the number still reads as assigned but its calls are refused;
    releasing again completes it."""
    number = await store.read(repo.get, owner_id, phone_number)
    trunk, name, old_rule = number["trunk_id"], _rule_name(number), number["dispatch_rule_id"]
    try:
        if old_rule:
            rule_id = await gateway.replace_dispatch_rule(
                old_rule, trunk_id=trunk, name=name, metadata=refusal_metadata(number)
            )
        else:
            rule_id = await gateway.create_dispatch_rule(trunk_id=trunk, name=name, metadata=refusal_metadata(number))
    except Exception as e:
        raise BadGateway(f"LiveKit could not stop routing {phone_number} to its agent: {e}") from None
    try:
        row = await store.write(lambda db: repo.release(db, owner_id, phone_number, dispatch_rule_id=rule_id))
    except Exception:  # a cancelled write is not undone: it may have committed
        if rule_id != old_rule:  # a rule the store does not know of: never two for one trunk
            await _undo(f"rule {rule_id} of {phone_number}", gateway.delete_dispatch_rule(rule_id))
        raise
    log.info(
        "phone number %s released (was agent %s); rule %s refuses its calls", phone_number, number["agent_id"], rule_id
    )
    return row


async def unregister(store: Store, gateway: LiveKitGateway, *, owner_id: str, phone_number: str) -> None:
    number = await store.read(repo.get, owner_id, phone_number)
    try:
        if number["dispatch_rule_id"]:
            await gateway.delete_dispatch_rule(number["dispatch_rule_id"])
        await gateway.delete_trunk(number["trunk_id"])
    except Exception as e:
        raise BadGateway(f"LiveKit could not delete the trunk or rule of {phone_number}: {e}") from None
    await store.write(repo.delete, owner_id, phone_number)
    log.info("phone number %s unregistered from tenant %s", phone_number, owner_id)
