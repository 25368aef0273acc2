"""Password hashing with argon2id (argon2-cffi's RFC 9106 low-memory profile). Hashing and verifying cost ~0.1 s of
CPU and 64 MiB on purpose: callers on the event loop run them in a thread."""

from __future__ import annotations

from functools import lru_cache

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

_HASHER = PasswordHasher()


def hash_password(password: str) -> str:
    return _HASHER.hash(password)


def verify_password(password_hash: str, password: str) -> bool:
    try:
        return _HASHER.verify(password_hash, password)
    except (VerificationError, InvalidHashError):
        return False


def needs_rehash(password_hash: str) -> bool:
    """True when the hash was made with other parameters than today's (then it is replaced at the next login)."""
    try:
        return _HASHER.check_needs_rehash(password_hash)
    except InvalidHashError:
        return False


@lru_cache(maxsize=1)
def _dummy_hash() -> str:
    return _HASHER.hash("voxarena: no such account")


def verify_nobody(password: str) -> bool:
    """Spend what a real verify costs, for an unknown email: the response time must not tell which emails exist."""
    verify_password(_dummy_hash(), password)
    return False
