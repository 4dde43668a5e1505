"""Building input records for the integration tests."""

from __future__ import annotations

import time

import msgspec

from streams.core.eventtime import DAY_MS


def day_base(days_ago: int) -> int:
    """10:00 UTC on the test's "today", minus `days_ago` days.

    The test's today is the UTC day of twelve hours ago, so its 10:00 lies 12 to 36 hours in
    the past whatever the time of day the suite runs at: event times must not be in the
    future, and tests add hours to these bases.
    """
    today = (int(time.time() * 1000) - 12 * 3_600_000) // DAY_MS * DAY_MS
    return today - days_ago * DAY_MS + 10 * 3_600_000


def ev(
    event_id: str, user: str, etype: str, ts: int, amount: float | None = None
) -> tuple[bytes, bytes]:
    doc: dict[str, object] = {"event_id": event_id, "user_id": user, "type": etype, "ts": ts}
    if amount is not None:
        doc["amount"] = amount
    return user.encode(), msgspec.json.encode(doc)
