"""Dispatch metadata: the one contract between the API and the job. The API builds a `DispatchMeta`, its LiveKit
gateway seals it for the server it dispatches to, and the job parses it, refusing what the product did not sign.

Why signed: a client's agents run through the client's own LiveKit server, and whoever holds that server's key (the
tenant) can dispatch jobs with any metadata. Trusted as sent, it would make the worker that joined that server load
whichever agent it names, another tenant's included, billed to that tenant. The signature (HMAC-SHA256 under a key
derived from the product's secret key) covers every field and the API key of the server the product dispatched to,
so metadata seen on one tenant's server cannot be replayed on another's."""

from __future__ import annotations

import dataclasses
import hashlib
import hmac
import json
from dataclasses import dataclass
from typing import Any

from core.secrets import SecretBox

SIGNATURE = "sig"
SERVER = "livekit_key"  # the API key of the LiveKit server the product dispatched the job to
PURPOSE = b"voxarena dispatch metadata v1"


class BadDispatch(ValueError):
    pass


@dataclass(frozen=True, kw_only=True)
class DispatchMeta:
    agent_id: str = ""  # empty only when `refuse` is set
    session_id: str | None = None
    owner_id: str | None = None
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

    def fields(self) -> dict[str, Any]:
        """The wire form: unset fields are left out (a refusal names no agent)."""
        return {k: v for k, v in dataclasses.asdict(self).items() if v is not None and (k != "agent_id" or v)}

    @classmethod
    def parse(cls, raw: str, signer: DispatchSigner, *, server_key: str) -> DispatchMeta:
        """The job's metadata, if the product signed it for the LiveKit server `server_key` names."""
        try:
            data = json.loads(raw or "{}")
        except ValueError as e:
            raise BadDispatch(f"dispatch metadata is not JSON: {e}") from None
        if not isinstance(data, dict):
            raise BadDispatch("dispatch metadata is not an object")
        data = signer.verify(data, server_key=server_key)
        if "refuse" in data:
            return cls._refusal(data)
        if not isinstance(data.get("agent_id"), str):
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
    def _refusal(cls, data: dict[str, Any]) -> DispatchMeta:
        """The rule of a registered number no agent is assigned to: `{owner_id, direction: "inbound",
        phone_number_id, refuse}`, and never an agent."""
        fields = ("refuse", "owner_id", "phone_number_id")
        if not all(isinstance(data.get(k), str) and data[k] for k in fields):
            raise BadDispatch(f"a refusing dispatch needs {', '.join(fields)}")
        if data.get("direction", "inbound") != "inbound" or "agent_id" in data or "session_id" in data:
            raise BadDispatch("a refusing dispatch is an inbound phone call with no agent and no session")
        return cls(
            owner_id=data["owner_id"],
            direction="inbound",
            phone_number_id=data["phone_number_id"],
            refuse=data["refuse"],
        )


class DispatchSigner:
    """Signs what the product dispatches and verifies what a job is dispatched with."""

    def __init__(self, key: bytes) -> None:
        self._key = key

    @classmethod
    def from_secret_box(cls, box: SecretBox) -> DispatchSigner:
        return cls(box.derive(PURPOSE))

    def seal(self, meta: DispatchMeta, *, server_key: str) -> str:
        data = {**meta.fields(), SERVER: server_key}
        return json.dumps({**data, SIGNATURE: self._mac(data)})

    def verify(self, data: dict[str, Any], *, server_key: str) -> dict[str, Any]:
        """The signed fields, or BadDispatch saying why they are not the product's for this server."""
        data = dict(data)
        signature = data.pop(SIGNATURE, None)
        if not isinstance(signature, str):
            raise BadDispatch("dispatch metadata is not signed by this product")
        if not hmac.compare_digest(signature, self._mac(data)):
            raise BadDispatch(
                "dispatch metadata signature does not verify (forged, altered, or signed under "
                "another VOXARENA_SECRET_KEY)"
            )
        signed_for = data.pop(SERVER, None)
        if signed_for != server_key:
            raise BadDispatch(
                f"dispatch metadata was signed for the LiveKit server of key {signed_for!r}, not "
                f"this worker's ({server_key!r})"
            )
        return data

    def _mac(self, data: dict[str, Any]) -> str:
        canonical = json.dumps(data, sort_keys=True, separators=(",", ":"))
        return hmac.new(self._key, canonical.encode(), hashlib.sha256).hexdigest()
