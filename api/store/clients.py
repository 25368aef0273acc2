"""Clients (Autonomite): a customer's site or app, with its own LiveKit server; agents may belong to one."""

from __future__ import annotations

import sqlite_utils


def exists(db: sqlite_utils.Database, owner_id: str, client_id: str) -> bool:
    return db.execute("SELECT 1 FROM clients WHERE id = ? AND owner_id = ?", [client_id, owner_id]).fetchone() is not None
