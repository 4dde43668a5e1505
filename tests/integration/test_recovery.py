"""A worker killed with SIGKILL recovers its table from the changelog and counts nothing twice."""

from __future__ import annotations

import asyncio
import random
from collections import Counter

import faust
import pytest
from faust.types import TP, Message

from streams.core.eventtime import DAY_MS
from streams.worker.restore import Change

from .conftest import StackFactory
from .events import day_base, ev


@pytest.mark.parametrize("store", ["memory://", "rocksdb://"])
async def test_kill9_restart_recovers_state_without_double_counting(
    make_stack: StackFactory, store: str
) -> None:
    stack = await make_stack(store=store)
    rng = random.Random(11)
    users = [f"u{i:02d}" for i in range(40)]
    start = day_base(4)
    records = []
    for n in range(3000):
        user = users[n % len(users)]
        # Times increase per user, so nothing is late; spread over four days.
        ts = start + n * (4 * DAY_MS // 3000)
        etype = rng.choice(["page_view", "session_start", "purchase"])
        records.append(ev(f"e{n}", user, etype, ts, 10 if etype == "purchase" else None))
    # A few producer retries: the same event again, later in the stream.
    records += [records[i] for i in (5, 500, 1500, 2500)]
    expected = Counter(r[0].decode() for r in records[:3000])

    first, second = records[:1500], records[1500:]
    await stack.produce(first)
    # Kill the worker mid-stream, once it has applied a good part of the first half.
    await stack.states(lambda s: sum(x.total_events for x in s.values()) >= 600)
    producing = asyncio.create_task(stack.produce(second))
    await asyncio.sleep(0.5)
    stack.kill9()
    await producing
    stack.start_worker()

    def complete(s: dict[str, object]) -> bool:
        return sum(x.total_events for x in s.values()) >= 3000  # type: ignore[attr-defined]

    states = await stack.states(complete, timeout=180)
    assert {u: s.total_events for u, s in states.items()} == dict(expected)
    purchases = sum(1 for r in records[:3000] if b'"purchase"' in r[1])
    assert sum(s.total_spend_cents for s in states.values()) == purchases * 1000


async def test_a_restart_restores_every_user_a_fetch_at_a_time(make_stack: StackFactory) -> None:
    """The memory store replays the whole changelog on restart. The worker applies it a fetch
    at a time (worker/restore.py), erasures included, and goes on from exactly those states."""
    stack = await make_stack(store="memory://")
    users = [f"r{i:03d}" for i in range(300)]
    start = day_base(3)
    records = [ev(f"a{n}", users[n % 300], "page_view", start + n * 60_000) for n in range(1500)]
    erased = ["r007", "r123"]
    records += [(u.encode(), None) for u in erased]  # type: ignore[misc]

    await stack.produce(records)
    before = await stack.states(
        lambda s: len(s) == 298 and sum(x.total_events for x in s.values()) == 1490
    )
    changelog = len(await stack.read(stack.changelog_topic, None))
    # A clean stop commits the input offsets: the new worker's users can come only from the
    # changelog (it applies nothing but the probes).
    stack.stop()
    stack.start_worker()
    await stack.produce([ev(f"p{i}", u, "page_view", start + DAY_MS) for i, u in enumerate(users)])

    expected = {u: before[u].total_events + 1 if u in before else 1 for u in users}
    after = await stack.states(
        lambda s: {u: x.total_events for u, x in s.items()} == expected, timeout=120
    )
    assert all(after[u].first_seen == before[u].first_seen for u in before)
    assert all(after[u].first_seen == start + DAY_MS for u in erased)
    assert stack.metric("pulse_events_applied_total") == len(users)
    by_fetch = stack.metric('pulse_changelog_records_restored_total{path="fetch"}')
    by_faust = stack.metric('pulse_changelog_records_restored_total{path="faust"}')
    assert by_fetch + by_faust >= changelog
    # Faust's loop takes a whole fetch only when its queue still held a record (rare): the
    # bulk goes by fetch.
    assert by_fetch >= 0.9 * changelog, (by_fetch, by_faust, changelog)


@pytest.mark.parametrize("value", [b"\x93state", None], ids=["state", "tombstone"])
async def test_a_raw_changelog_record_is_applied_as_fausts_decode_gives_it(
    value: bytes | None,
) -> None:
    """Records of the state table's changelog (raw bytes) skip Faust's decode: what the store
    reads of them (key, value, message) is what the decode would have given."""
    app = faust.App("pulse-restore-check", broker="kafka://127.0.0.1:1", store="memory://")
    table = app.Table("user-state", key_type=bytes, value_type=bytes, partitions=2)
    topic = table.changelog_topic
    assert (topic.key_serializer, topic.value_serializer) == ("raw", "raw")
    tp = TP(topic.get_topic_name(), 1)
    message = Message(
        topic=tp.topic, partition=1, offset=7, timestamp=0.0, timestamp_type=0, headers=[],
        key=b"u1", value=value, checksum=None, tp=tp,
    )  # fmt: skip
    decoded, change = await topic.decode(message), Change(message)
    assert (change.key, change.value, change.message) == (
        decoded.key,
        decoded.value,
        decoded.message,
    )
    table.apply_changelog_batch([change])
    assert table.data.get(b"u1") == value
