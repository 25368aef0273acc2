"""Errors the repositories raise. They speak data, not HTTP: the API's error middleware maps them to status codes
(``api/errors.py``), and the CLI prints them. The message is written for the caller (it becomes ``detail``)."""

from __future__ import annotations

import sqlite3


class StoreError(Exception):
    """Something about the stored data prevents the operation."""


class NotFoundError(StoreError):
    """The record does not exist, or exists in another tenant (the two are indistinguishable on purpose)."""


class ConflictError(StoreError):
    """The write would break a uniqueness rule (a taken slug, subdomain or email; a reused idempotency key)."""


class InvalidReferenceError(StoreError):
    """A body names a record that does not exist in the tenant (an agent's unknown ``clientId``)."""


class InvalidValueError(StoreError):
    """The write would store values that contradict each other or what is stored (an agent's
    ``minEndpointingDelay`` above its ``maxEndpointingDelay``)."""


class LimitError(StoreError):
    """A tenant limit refused the write; ``kind`` names it (``tenant_limit``, ``concurrency_limit``)."""

    def __init__(self, detail: str, *, kind: str) -> None:
        super().__init__(detail)
        self.kind = kind


class StorageUnavailable(StoreError):
    """The database cannot be used for a reason of its storage (disk full, read-only, I/O error, cannot open): not
    the caller's fault, and over once the condition clears."""


class IntegrityViolation(Exception):
    """PostgreSQL's unique, foreign-key or check violation (SQLite raises ``sqlite3.IntegrityError``); repositories
    catch ``INTEGRITY_ERRORS`` and raise a ``ConflictError`` in words."""

    def __init__(self, detail: str, *, constraint: str = "") -> None:
        super().__init__(f"{detail} ({constraint})" if constraint else detail)
        self.constraint = constraint


INTEGRITY_ERRORS: tuple[type[Exception], ...] = (sqlite3.IntegrityError, IntegrityViolation)
