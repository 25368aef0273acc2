"""Timestamps as the store keeps them: ISO 8601 UTC text of fixed width, so text order is time order."""

from __future__ import annotations

from datetime import UTC, date, datetime, time

FORMAT = "%Y-%m-%dT%H:%M:%S.%fZ"


def to_iso(dt: datetime) -> str:
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    # isoformat is several times faster than strftime and gives the same fixed-width text for UTC
    return dt.astimezone(UTC).replace(tzinfo=None).isoformat(timespec="microseconds") + "Z"


def now_iso() -> str:
    return to_iso(datetime.now(UTC))


def parse_iso(text: str) -> datetime:
    dt = datetime.fromisoformat(text.replace("Z", "+00:00"))
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    return dt.astimezone(UTC)


def day_start(d: date) -> str:
    return to_iso(datetime.combine(d, time.min, tzinfo=UTC))


def today_utc() -> date:
    return datetime.now(UTC).date()


def whole_seconds(ms: int | None) -> int | None:
    """A duration in milliseconds as the contract's whole seconds (rounded half up); None stays None."""
    return None if ms is None else (ms + 500) // 1000


def elapsed_ms(start_iso: str, end_iso: str) -> int:
    """Milliseconds from one stored timestamp to another (never negative)."""
    return max(0, int((parse_iso(end_iso) - parse_iso(start_iso)).total_seconds() * 1000))
