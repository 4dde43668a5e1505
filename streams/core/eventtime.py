"""Event-time arithmetic: parsing timestamps, UTC day numbers, formatting.

All times inside Pulse are integer epoch milliseconds (UTC). Days are UTC calendar days
numbered from the epoch, so a "7-day window" at time t covers day(t)-6 .. day(t).
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

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


_EPOCH_ORDINAL = date(1970, 1, 1).toordinal()
# The datetime path goes through a float of seconds, exact to the millisecond below 2**32 s (in
# 2106); the integer formatting gives the same text there (a property test checks both).
_EXACT_UNTIL_MS = 2**32 * 1000
# Day texts, cleared when full: timestamps near each other share their day.
_DAYS_KEPT = 4096
_DAYS: dict[int, str] = {}


def format_ts(ts_ms: int) -> str:
    """RFC 3339 UTC with milliseconds, e.g. 2026-11-22T10:00:00.000Z.

    Formatted with integers (about 1 us, against 3 us through datetime.strftime): every view
    document holds six of these, every output two.
    """
    if not 0 <= ts_ms < _EXACT_UNTIL_MS:
        dt = datetime.fromtimestamp(ts_ms / 1000, tz=UTC)
        return dt.strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"
    days, ms = divmod(ts_ms, DAY_MS)
    day = _DAYS.get(days)
    if day is None:
        if len(_DAYS) >= _DAYS_KEPT:
            _DAYS.clear()
        day = _DAYS[days] = date.fromordinal(_EPOCH_ORDINAL + days).isoformat()
    seconds, ms = divmod(ms, 1000)
    minutes, seconds = divmod(seconds, 60)
    hours, minutes = divmod(minutes, 60)
    # %-formatting: a third faster than the f-string with the same padding (measured).
    return "%sT%02d:%02d:%02d.%03dZ" % (day, hours, minutes, seconds, ms)  # noqa: UP031


def virtual_now(wall_ms: int, origin_ms: int, rate: float) -> int:
    """Wall-clock epoch millis on the event-time clock: origin + (wall - origin) * rate.

    With rate 1 (the default) event time is wall time. Demos and tests run it faster; every
    process given the same origin and rate (the worker, the API, the demo generator) agrees
    on the same clock without talking to the others. Pure: the caller reads the wall clock.
    """
    if rate == 1.0:
        return wall_ms
    return origin_ms + int((wall_ms - origin_ms) * rate)
