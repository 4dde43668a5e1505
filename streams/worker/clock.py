"""The worker's notion of "now": wall time, optionally accelerated for demos and tests.

With rate 1 (the default) virtual time is wall time. With rate R and origin O, virtual time is
O + (wall - O) * R, so every process given the same O and R agrees on the same virtual clock
without talking to each other.
"""

from __future__ import annotations


def virtual_now(wall_ms: int, origin_ms: int, rate: float) -> int:
    """Map wall-clock epoch millis onto the (possibly accelerated) event-time clock."""
    if rate == 1.0:
        return wall_ms
    return origin_ms + int((wall_ms - origin_ms) * rate)
