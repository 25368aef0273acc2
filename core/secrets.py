"""Secrets at rest (clients' LiveKit secrets and Supabase keys, tenants' Twilio auth tokens, callback signing
secrets): Fernet (AES-128-CBC + HMAC-SHA256) under a key from ``VOXARENA_SECRET_KEY`` (any string; hashed to the
key) or, without it, one generated into the data dir."""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import uuid
from pathlib import Path

from cryptography.fernet import Fernet, InvalidToken

KEY_FILE = "secret.key"


class SecretBox:
    def __init__(self, key: bytes) -> None:
        self._key = key
        self._fernet = Fernet(key)

    @classmethod
    def from_settings(cls, secret_key: str, data_dir: Path) -> SecretBox:
        if secret_key:
            return cls(base64.urlsafe_b64encode(hashlib.sha256(secret_key.encode()).digest()))
        path = data_dir / KEY_FILE
        if not path.exists():
            write_once(path, Fernet.generate_key())
        return cls(path.read_bytes().strip())

    def derive(self, purpose: bytes) -> bytes:
        """A key for another use (signing), from the same secret: one key to keep, none reusable for the other."""
        return hmac.new(self._key, purpose, hashlib.sha256).digest()

    def seal(self, plain: str) -> str:
        return self._fernet.encrypt(plain.encode()).decode()

    def open(self, sealed: str) -> str:
        try:
            return self._fernet.decrypt(sealed.encode()).decode()
        except InvalidToken:
            raise ValueError("a stored secret cannot be decrypted with this VOXARENA_SECRET_KEY") from None


def write_once(path: Path, data: bytes) -> None:
    """Create a private file (0600) atomically; if two processes start at once, the first writer wins."""
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    tmp = path.with_suffix(f".{uuid.uuid4().hex}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
    try:
        os.link(tmp, path)
    except FileExistsError:
        pass
    finally:
        tmp.unlink()


def mask(secret: str | None) -> str | None:
    """What a response shows of a write-only secret."""
    if not secret:
        return None
    return "****" + secret[-4:] if len(secret) >= 12 else "****"


def is_masked(value: str | None) -> bool:
    return value is not None and value.startswith("****")
