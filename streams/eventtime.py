"""Event-time arithmetic: parsing timestamps, UTC day numbers, formatting.

All times inside Pulse are integer epoch milliseconds (UTC). Days are UTC calendar days
numbered from the epoch, so a "7-day window" at time t covers day(t)-6 .. day(t).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

DAY_MS = 86_400_000
HOUR_MS = 3_600_000
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


class TimestampError(ValueError):
    """A timestamp that is neither RFC 3339 nor epoch milliseconds."""


def parse_ts(value: object) -> int:
    """Return epoch milliseconds for an RFC 3339 string or an integer of epoch millis.

    Raises TimestampError with a message saying what was wrong.
    """
    if isinstance(value, bool):
        raise TimestampError("ts must be an RFC 3339 string or epoch milliseconds, not a boolean")
    if isinstance(value, int):
        return value
    if isinstance(value, float):
        if value != value or value in (float("inf"), float("-inf")):
            raise TimestampError("ts must be a finite number of epoch milliseconds")
        if not value.is_integer():
            raise TimestampError("ts in epoch milliseconds must be a whole number")
        return int(value)
    if isinstance(value, str):
        text = value.strip()
        if text.isascii() and text.isdigit():
            return int(text)
        try:
            parsed = datetime.fromisoformat(text.replace("Z", "+00:00").replace("z", "+00:00"))
        except ValueError:
            raise TimestampError(
                f"ts {value[:40]!r} is not RFC 3339 (e.g. 2026-11-22T10:00:00Z)"
            ) from None
        if parsed.tzinfo is None:
            raise TimestampError("ts must carry a UTC offset (e.g. 'Z' or '+08:00')")
        # Integer arithmetic: float seconds * 1000 loses a millisecond for some instants.
        return (parsed - _EPOCH) // timedelta(milliseconds=1)
    raise TimestampError(
        f"ts must be an RFC 3339 string or epoch milliseconds, not {type(value).__name__}"
    )


def day_of(ts_ms: int) -> int:
    """The UTC day number holding ts_ms."""
    return ts_ms // DAY_MS


def format_ts(ts_ms: int) -> str:
    """RFC 3339 UTC with milliseconds, e.g. 2026-11-22T10:00:00.000Z."""
    return datetime.fromtimestamp(ts_ms / 1000, tz=UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"
