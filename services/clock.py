"""The API's "now": wall time, or the accelerated event-time clock the worker runs for a demo.

The mapping is the core's `virtual_now`, the one the worker uses. Every route that needs "now"
(the ingest bound on future `ts`, the stats windows, the live page) calls `now_ms`, so the API
and the worker agree on one clock.
"""

from __future__ import annotations

import time

from services.settings import ApiSettings
from streams.core.eventtime import virtual_now


def wall_ms() -> int:
    """The wall clock in epoch millis."""
    return time.time_ns() // 1_000_000


def now_ms(settings: ApiSettings) -> int:
    """The current event time in epoch millis (`PULSE_CLOCK_ORIGIN_MS` / `PULSE_CLOCK_RATE`)."""
    return virtual_now(wall_ms(), settings.clock_origin_ms, settings.clock_rate)
