"""A tenant's concurrent-call limit: the rule; the store counts the live calls in the transaction that creates one
(``core/store/sessions.py`` ``reserve_call_slot``), so two requests at once cannot both take the last slot."""

from __future__ import annotations

from core.store.errors import LimitError


def refuse_beyond_limit(limit: int | None, live_calls: int) -> None:
    """Refuses one more call when `live_calls` (text chats not counted) already reach `limit`; None is no limit."""
    if limit is not None and live_calls >= limit:
        raise LimitError(f"the tenant's limit of {limit} concurrent calls is reached", kind="concurrency_limit")
