"""Waiting on a condition read from a real server."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable


async def until(
    cond: Callable[[], Awaitable[bool]], timeout: float = 60, every: float = 0.2
) -> None:
    """Return once `cond()` holds; fail the test when it still does not after `timeout` s."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if await cond():
            return
        await asyncio.sleep(every)
    raise AssertionError(f"timed out after {timeout:.0f}s")
