"""Inputs and waits shared by the fault scenarios."""

from __future__ import annotations

import asyncio
import random
import subprocess
import time
from collections import Counter

from aiokafka.admin import AIOKafkaAdminClient

from streams.core.eventtime import DAY_MS
from streams.core.state import UserState
from tests.integration.conftest import Stack
from tests.integration.events import day_base, ev

Record = tuple[bytes, bytes]


def traffic(n: int, users: int, *, seed: int, prefix: str = "e", days: int = 4) -> list[Record]:
    """n valid events over `users` users, times increasing (nothing late), some purchases."""
    rng = random.Random(seed)
    names = [f"u{i:03d}" for i in range(users)]
    start = day_base(days)
    out = []
    for i in range(n):
        user = names[i % users]
        ts = start + i * (days * DAY_MS // max(n, 1))
        etype = rng.choice(["page_view", "session_start", "purchase"])
        amount = rng.choice([5, 40, 120, 600]) if etype == "purchase" else None
        out.append(ev(f"{prefix}{i}", user, etype, ts, amount))
    return out


def per_user(records: list[Record]) -> Counter[str]:
    """Events per user in `records`, each event id once (the plain-Python reference)."""
    seen: set[bytes] = set()
    counts: Counter[str] = Counter()
    for key, value in records:
        if value in seen:
            continue
        seen.add(value)
        counts[key.decode()] += 1
    return counts


def total(states: dict[str, UserState]) -> int:
    return sum(s.total_events for s in states.values())


async def wait_exit(proc: subprocess.Popen[bytes], timeout: float) -> int | None:
    deadline = time.monotonic() + timeout
    while proc.poll() is None and time.monotonic() < deadline:
        await asyncio.sleep(0.2)
    return proc.poll()


async def topic_exists(stack: Stack, topic: str) -> bool:
    admin = AIOKafkaAdminClient(bootstrap_servers=stack.bootstrap)
    await admin.start()
    try:
        return topic in set(await admin.list_topics())
    finally:
        await admin.close()


def spend_cents(records: list[Record]) -> Counter[str]:
    """Purchase spend per user in cents, each event once (the plain-Python reference)."""
    import msgspec

    seen: set[bytes] = set()
    cents: Counter[str] = Counter()
    for key, value in records:
        if value in seen:
            continue
        seen.add(value)
        doc = msgspec.json.decode(value)
        if doc["type"] == "purchase":
            cents[key.decode()] += round(doc["amount"] * 100)
    return cents


async def outputs_by_key(
    stack: Stack, expected: set[str], timeout: float = 90
) -> dict[str, list[dict[str, object]]]:
    """Every output record of the three topics, grouped by idempotency key, once at least the
    `expected` keys are there (or after `timeout`)."""
    deadline = time.monotonic() + timeout
    while True:
        got: dict[str, list[dict[str, object]]] = {}
        for topic in sorted(set(stack.settings.output_topics.values())):
            for doc in await stack.outputs(topic):
                got.setdefault(str(doc["idempotency_key"]), []).append(doc)
        if expected <= set(got) or time.monotonic() > deadline:
            return got
        await asyncio.sleep(1)


def without_emitted_at(doc: dict[str, object]) -> dict[str, object]:
    return {k: v for k, v in doc.items() if k != "emitted_at"}
