"""Errors the repositories raise. They speak data, not HTTP: the API's error middleware maps them to status codes
(``api/errors.py``), and the CLI prints them."""

from __future__ import annotations


class StoreError(Exception):
    """Something about the stored data prevents the operation."""


class NotFoundError(StoreError):
    """The record does not exist (or is not visible to the caller)."""


class ConflictError(StoreError):
    """The write would break a uniqueness rule (e.g. an email that is already registered)."""
