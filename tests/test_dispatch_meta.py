"""Dispatch metadata is the product's word only when the product signed it for the server the worker joined: a job
dispatched by anyone else holding that server's key (a tenant's own LiveKit server) names no agent it would load."""

from __future__ import annotations

import hashlib
import hmac
import json

import pytest

from core.dispatch_meta import BadDispatch, DispatchMeta, DispatchSigner
from core.secrets import SecretBox
from core.settings import Settings
from worker.config import parse_dispatch

KEY = b"k" * 32
SERVER_KEY = "tenant-b-livekit-key"
SIGNER = DispatchSigner(KEY)


def sign(fields: dict, *, key: bytes = KEY, server_key: str = SERVER_KEY) -> str:
    """Metadata as the product signs it, computed here from the format (not through the signer under test)."""
    data = {**fields, "livekit_key": server_key}
    mac = hmac.new(key, json.dumps(data, sort_keys=True, separators=(",", ":")).encode(), hashlib.sha256)
    return json.dumps({**data, "sig": mac.hexdigest()})


def parse(raw: str, *, server_key: str = SERVER_KEY) -> DispatchMeta:
    return DispatchMeta.parse(raw, SIGNER, server_key=server_key)


WEB_CALL = {"agent_id": "agent-a", "session_id": "s1", "owner_id": "tenant-a", "direction": "inbound"}


def test_metadata_the_product_sealed_for_this_server_parses_back_to_what_was_built():
    for meta in (
        DispatchMeta(**WEB_CALL),
        DispatchMeta(
            agent_id="a",
            session_id="s",
            owner_id="t",
            direction="outbound",
            phone_number="+15551234567",
            call_id="call_1",
        ),
        DispatchMeta(agent_id="a", owner_id="t", phone_number_id="pn_1"),
        DispatchMeta(owner_id="t", phone_number_id="pn_1", refuse="number_not_assigned"),
    ):
        raw = SIGNER.seal(meta, server_key=SERVER_KEY)
        assert parse(raw) == meta
        assert raw == sign(meta.fields())  # the documented format, byte for byte


@pytest.mark.parametrize(
    "raw, why",
    [
        (json.dumps(WEB_CALL), "not signed"),  # what a tenant dispatches through its own server
        (json.dumps({**WEB_CALL, "sig": "00" * 32}), "does not verify"),
        (sign(WEB_CALL, key=b"another product's key" * 2), "does not verify"),
        (sign(WEB_CALL).replace("agent-a", "agent-x"), "does not verify"),  # a signed call, another agent
        (sign(WEB_CALL, server_key="tenant-a-livekit-key"), "signed for the LiveKit server of key"),  # replayed
        (json.dumps({"owner_id": "t", "phone_number_id": "pn_1", "refuse": "number_not_assigned"}), "not signed"),
        ('"just a string"', "not an object"),
    ],
)
def test_unsigned_forged_altered_or_replayed_metadata_is_refused_whatever_it_names(raw, why):
    with pytest.raises(BadDispatch, match=why):
        parse(raw)


def test_the_worker_verifies_with_the_key_derived_from_the_products_secret_key_and_its_own_server(tmp_path):
    settings = Settings(data_dir=tmp_path, secret_key="product secret", livekit_api_key=SERVER_KEY)
    product = DispatchSigner.from_secret_box(SecretBox.from_settings("product secret", tmp_path))
    assert parse_dispatch(product.seal(DispatchMeta(**WEB_CALL), server_key=SERVER_KEY), settings).agent_id == "agent-a"
    with pytest.raises(BadDispatch):
        parse_dispatch(SIGNER.seal(DispatchMeta(**WEB_CALL), server_key=SERVER_KEY), settings)
