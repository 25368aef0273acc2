"""Parses dispatch metadata; the mapping of settings and stored agents onto `pipelines/` is in
``api/services/pipeline.py``."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from api.services.pipeline import agent_spec, providers_config

__all__ = ["BadDispatch", "DispatchMeta", "agent_spec", "providers_config"]


class BadDispatch(ValueError):
    pass


@dataclass(frozen=True)
class DispatchMeta:
    agent_id: str  # empty only when `refuse` is set
    session_id: str | None
    owner_id: str | None
    direction: str = "inbound"
    phone_number: str | None = None
    call_id: str | None = None  # an outbound call: the job dials it
    phone_number_id: str | None = None  # a call to one of the tenant's numbers (its dispatch rule's metadata)
    # a call to a registered number no agent is assigned to: why the job refuses it (no agent, no session)
    refuse: str | None = None

    @property
    def inbound_phone(self) -> bool:
        """An inbound phone call: the number's dispatch rule dispatched it, and the job opens its session."""
        return self.direction == "inbound" and self.session_id is None and self.phone_number_id is not None

    @classmethod
    def parse(cls, raw: str) -> "DispatchMeta":
        try:
            data = json.loads(raw or "{}")
        except ValueError as e:
            raise BadDispatch(f"dispatch metadata is not JSON: {e}") from None
        if isinstance(data, dict) and "refuse" in data:
            return cls._refusal(data)
        if not isinstance(data, dict) or not isinstance(data.get("agent_id"), str):
            raise BadDispatch("dispatch metadata has no agent_id")
        direction = data.get("direction", "inbound")
        if direction not in ("inbound", "outbound"):
            raise BadDispatch(f"unknown direction {direction!r}")
        return cls(
            agent_id=data["agent_id"],
            session_id=data.get("session_id"),
            owner_id=data.get("owner_id"),
            direction=direction,
            phone_number=data.get("phone_number"),
            call_id=data.get("call_id") if isinstance(data.get("call_id"), str) else None,
            phone_number_id=data.get("phone_number_id") if isinstance(data.get("phone_number_id"), str) else None,
        )

    @classmethod
    def _refusal(cls, data: dict[str, Any]) -> "DispatchMeta":
        """The rule of a registered number no agent is assigned to: `{owner_id, direction: "inbound",
        phone_number_id, refuse}`, and never an agent."""
        fields = ("refuse", "owner_id", "phone_number_id")
        if not all(isinstance(data.get(k), str) and data[k] for k in fields):
            raise BadDispatch(f"a refusing dispatch needs {', '.join(fields)}")
        if data.get("direction", "inbound") != "inbound" or "agent_id" in data or "session_id" in data:
            raise BadDispatch("a refusing dispatch is an inbound phone call with no agent and no session")
        return cls(agent_id="", session_id=None, owner_id=data["owner_id"], direction="inbound",
                   phone_number_id=data["phone_number_id"], refuse=data["refuse"])
