"""The Redis view written by the worker: CAS on version, indexes, erasure, rebuild from Kafka."""

from __future__ import annotations

import asyncio
from collections import Counter
from typing import Any

import msgspec
import pytest
import redis.asyncio as aioredis
from redis.client import NEVER_DECODE

from streams.core.eventtime import DAY_MS
from streams.core.outputs import churn_warning, encode_output, lifecycle_changed
from streams.core.policy import Policy
from streams.core.snapshot import user_document
from streams.core.state import decode_state, encode_state
from streams.view.keys import (
    epoch_key,
    parse_timeline_field,
    stage_counts_key,
    tier_counts_key,
    timeline_bucket_key,
    timeline_key,
    timeline_start,
    user_key,
)
from streams.view.rebuild import rebuild_view, timeline
from streams.view.writer import View

from .conftest import Stack, StackFactory
from .events import day_base, ev
from .waits import until


def _client(stack: Stack) -> aioredis.Redis:
    return aioredis.from_url(stack.settings.redis_url, decode_responses=True)


async def _dump(client: aioredis.Redis, prefix: str) -> dict[str, Any]:
    """Every key of the view with its full content, as bytes (a user's state is msgpack; not
    the epoch token: not user data)."""
    out: dict[str, Any] = {}
    async for key in client.scan_iter(match=f"{prefix}:*"):
        if key == epoch_key(prefix):
            continue
        kind = await client.type(key)
        if kind == "hash":
            out[key] = await client.execute_command("HGETALL", key, **{NEVER_DECODE: True})
        elif kind == "list":
            out[key] = await client.lrange(key, 0, -1)
        elif kind == "zset":
            out[key] = await client.zrange(key, 0, -1, withscores=True)
        else:
            out[key] = await client.get(key)
    return out


async def _user_hash(client: aioredis.Redis, prefix: str, user: str) -> dict[bytes, bytes]:
    reply = await client.execute_command("HGETALL", user_key(prefix, user), **{NEVER_DECODE: True})
    return dict(reply)


async def _scenario(stack: Stack) -> None:
    first = day_base(20)
    records = [ev(f"s{i}", "sil", "session_start", first + i * DAY_MS) for i in range(10)]
    records += [
        ev("b1", "ben", "purchase", day_base(1), 300),
        ev("b2", "ben", "purchase", day_base(1) + 5, 300),
    ]
    records += [ev("a1", "ann", "signup", day_base(2))]
    await stack.produce(records)
    await stack.states(lambda s: len(s) == 3 and s["sil"].total_events == 10)
    for days in range(10, -1, -1):
        await stack.tick(day_base(days))
    await stack.wait_sweeps(11 * stack.settings.partitions)


async def _caught_up(stack: Stack, client: aioredis.Redis) -> None:
    """Wait until the view holds every user of the table at the table's version."""
    p = stack.settings.view_prefix
    states = await stack.states(lambda s: True)

    async def caught_up() -> bool:
        for user, state in states.items():
            version = await client.hget(user_key(p, user), "version")
            if version is None or int(version) < state.version:
                return False
        return True

    await until(caught_up)


async def _timeline_net(client: aioredis.Redis, prefix: str) -> dict[str, int]:
    """Per stage, users who entered it minus users who left it over the whole timeline."""
    net: Counter[str] = Counter()
    for start in await client.zrange(timeline_key(prefix), 0, -1):
        for field, n in (await client.hgetall(timeline_bucket_key(prefix, int(start)))).items():
            from_stage, to_stage = parse_timeline_field(field)
            net[to_stage] += int(n)
            net[from_stage] -= int(n)
    return {s: n for s, n in net.items() if s and n}


async def _rebuild_restores(stack: Stack, client: aioredis.Redis, before: dict[str, Any]) -> None:
    """`pulse rebuild-view` writes the 3 users and the view equals `before` key for key."""
    view = View(aioredis.from_url(stack.settings.redis_url), stack.settings.view_prefix)
    try:
        assert await rebuild_view(stack.settings, view) == 3
        assert await _dump(client, stack.settings.view_prefix) == before
        # Rebuilding again over a complete view writes nothing: every version is already there.
        assert await rebuild_view(stack.settings, view) == 0
    finally:
        await view.client.aclose()


async def test_view_follows_the_table_and_rebuilds_identically(stack: Stack) -> None:
    await _scenario(stack)
    p = stack.settings.view_prefix
    client = _client(stack)
    try:
        await _caught_up(stack, client)
        sil = await _user_hash(client, p, "sil")
        assert sil[b"stage"] == b"at_risk"
        # The view holds the state as the table does; the document is the API's to build.
        table = await stack.states(lambda s: True)
        assert sil[b"state"] == encode_state(table["sil"])
        assert b"doc" not in sil
        doc = user_document(decode_state(sil[b"state"]), Policy())
        assert doc["windows"]["30d"]["active_days"] == 10
        assert doc["last_warning_reason"] == "silence_exceeds_normal"
        assert await client.zrange(f"{p}:seg:stage:at_risk", 0, -1) == ["sil"]
        assert await client.hget(tier_counts_key(p), "gold") == "1"  # ben spent 600
        history = [
            msgspec.json.decode(x) for x in await client.lrange(f"{p}:transitions:sil", 0, -1)
        ]
        assert [h["kind"] for h in history][:2] == ["churn_warning", "lifecycle_changed"]
        assert await client.zcard(f"{p}:warnings") == 1
        # The timeline: sil's silence entered at_risk on the day it was found, and the changes
        # add up to the users per stage (every change of the scenario is within the series).
        at_risk = await client.hget(
            timeline_bucket_key(p, timeline_start(history[1]["event_time_ms"], DAY_MS)),
            f"{history[1]['from_stage']}>at_risk",
        )
        assert at_risk == "1"
        counts = await client.hgetall(stage_counts_key(p))
        assert await _timeline_net(client, p) == {k: int(v) for k, v in counts.items()}

        before = await _dump(client, p)
        for key in before:
            await client.delete(key)
        await _rebuild_restores(stack, client, before)
    finally:
        await client.aclose()


@pytest.mark.parametrize("store", ["memory://", "rocksdb://"])
async def test_the_worker_writes_its_users_again_when_redis_lost_the_view(
    make_stack: StackFactory, store: str
) -> None:
    """Redis restarted empty or flushed: users without news since come back by themselves."""
    stack = await make_stack(store=store)
    await _scenario(stack)
    p = stack.settings.view_prefix
    client = _client(stack)
    try:
        await _caught_up(stack, client)
        before = await _dump(client, p)
        assert before[f"{p}:transitions:sil"]  # the worker does not know these: see below
        # All at once, as a flush does: key by key would race with the worker's rewrite.
        await client.delete(*[key async for key in client.scan_iter(match=f"{p}:*")])

        # No event arrives: the worker notices the new epoch and writes its users again.
        per_user = [k for k in before if k.startswith(f"{p}:user:")]
        users_and_indexes = [
            k
            for k in before
            if ":transitions:" not in k and ":timeline" not in k and k != f"{p}:warnings"
        ]

        async def states_back() -> bool:
            return bool(await client.exists(*per_user) == len(per_user))

        await until(states_back, timeout=30)
        await until(lambda: _resyncs(stack), timeout=10)
        now = await _dump(client, p)
        assert {k: now.get(k) for k in users_and_indexes} == {
            k: before[k] for k in users_and_indexes
        }
        # Transitions, the warnings index and the timeline live only on the output topics:
        # rebuild-view brings them back next to the states already there, and the view is
        # whole again.
        assert not await client.exists(f"{p}:transitions:sil", f"{p}:warnings", timeline_key(p))
        await _rebuild_restores(stack, client, before)
    finally:
        await client.aclose()


async def _resyncs(stack: Stack) -> bool:
    return await asyncio.to_thread(stack.metric, "pulse_view_resyncs_total") >= 1


async def test_a_stale_write_never_overwrites_a_newer_state(stack: Stack) -> None:
    from streams.core.contract import Event
    from streams.core.engine import apply_event

    policy = Policy()
    view = View(aioredis.from_url(stack.settings.redis_url), "cas-test")
    client = _client(stack)
    try:
        t = day_base(1)
        s1 = apply_event(None, Event("e1", "cas", "page_view", t), policy).state
        s2 = apply_event(s1, Event("e2", "cas", "purchase", t + 1, 60_000, True), policy).state
        assert await view.write(s2, [])
        assert not await view.write(s1, [])  # older version: refused
        stored = await _user_hash(client, "cas-test", "cas")
        assert int(stored[b"version"]) == s2.version and stored[b"tier"] == b"gold"
        assert decode_state(stored[b"state"]) == s2
        assert await client.hgetall(tier_counts_key("cas-test")) == {"gold": "1"}
        assert await client.hgetall(stage_counts_key("cas-test")) == {"new": "1"}
    finally:
        await view.client.aclose()
        await client.aclose()


async def test_a_tombstone_erases_the_user_everywhere(stack: Stack) -> None:
    p = stack.settings.view_prefix
    await stack.produce(
        [ev("x1", "gone", "page_view", day_base(0)), ev("k1", "kept", "page_view", day_base(0))]
    )
    client = _client(stack)
    try:

        async def both() -> bool:
            return bool(await client.exists(user_key(p, "gone"), user_key(p, "kept")) == 2)

        await until(both)
        await stack.produce([(b"gone", None)])  # type: ignore[list-item]

        async def erased() -> bool:
            return not await client.exists(user_key(p, "gone"))

        await until(erased)
        assert await client.zrange(f"{p}:seg:stage:new", 0, -1) == ["kept"]
        assert await client.hget(stage_counts_key(p), "new") == "1"
        assert not await client.exists(f"{p}:transitions:gone")
        states = await stack.states(lambda s: "gone" not in s)
        assert "kept" in states
        # The erased user left the timeline's populations too (and a rebuild agrees).
        assert await _timeline_net(client, p) == {"new": 1}
        view = View(aioredis.from_url(stack.settings.redis_url), p)
        try:
            await rebuild_view(stack.settings, view)
        finally:
            await view.client.aclose()
        assert await _timeline_net(client, p) == {"new": 1}
    finally:
        await client.aclose()


def test_rebuild_counts_each_published_change_once_and_keeps_the_newest_buckets() -> None:
    """The series rebuild-view writes: distinct lifecycle changes by idempotency key (a
    repeat on the topic counts once; other kinds not at all), an erased user's last stage left
    in the newest bucket, and only the kept span before the newest bucket."""

    def change(user: str, day: int, from_stage: str | None, to_stage: str) -> bytes:
        at = day_base(day)
        return encode_output(lifecycle_changed(user, at, from_stage, to_stage, "r", {}), at)

    values = [
        change("ann", 5, None, "new"),
        change("ann", 5, None, "new"),  # published twice (at least once)
        change("ann", 2, "new", "active"),
        change("gone", 3, None, "new"),  # erased since: not in the changelog
        change("old", 40, None, "new"),  # older than the kept span
        encode_output(churn_warning("ann", day_base(2), "silence", 0.5, "active", "gold", {}), 0),
    ]
    series = timeline(values, {"ann", "old"}, DAY_MS, 10)
    day = lambda n: timeline_start(day_base(n), DAY_MS)  # noqa: E731
    assert series == {
        day(5): Counter({">new": 1}),
        day(3): Counter({">new": 1}),
        day(2): Counter({"new>active": 1, "new>": 1}),
    }
