"""The store's own errors. Repositories raise these; only `api/errors.py` knows which HTTP status each becomes."""

from __future__ import annotations


class StoreError(Exception):
    """Base class: the message is written for the API's caller (it becomes the error body's ``detail``)."""


class NotFoundError(StoreError):
    """The record does not exist, or exists in another tenant (the two are indistinguishable on purpose)."""


class ConflictError(StoreError):
    """The write contradicts what is stored (a duplicate slug or subdomain, a reused idempotency key)."""


class LimitError(StoreError):
    """A tenant limit refused the write; ``kind`` names it (``tenant_limit``, ``concurrency_limit``)."""

    def __init__(self, detail: str, *, kind: str) -> None:
        super().__init__(detail)
        self.kind = kind
