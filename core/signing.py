"""How the product signs what it sends a tenant's own servers (outbound-call callbacks, agents' HTTP tools, the
pre-call and post-call webhooks), Stripe-style:

``X-Voxarena-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256(secret, "<t>.<signed bytes>")>``

The signed bytes are the request body; a GET (a tool's query) has none, and signs its whole query string instead,
exactly as sent (percent-encoded: a receiver reads it raw, before decoding). The
secret is the tenant's signing secret (``GET /api/calls/callback-secret``); a receiver recomputes the HMAC and
rejects an old ``t``."""

from __future__ import annotations

import hashlib
import hmac

SIGNATURE_HEADER = "X-Voxarena-Signature"


def sign(secret: str, body: bytes, t: int) -> str:
    digest = hmac.new(secret.encode(), f"{t}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={t},v1={digest}"
