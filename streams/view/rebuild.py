"""Rebuilding the Redis view from Kafka after Redis lost it (`pulse rebuild-view`).

The current states come from the table's changelog (latest value per user, tombstones
erase), each user's recent transitions and the warning index from the output topics. Writes
go through the same compare-and-set script as the worker's, so running this next to a live
worker never overwrites a newer state.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from typing import Any

import msgspec
from aiokafka import AIOKafkaConsumer, TopicPartition

from streams.core.outputs import Kind, Output
from streams.core.state import UserState, decode_state
from streams.settings import WorkerSettings
from streams.view.keys import TRANSITIONS_KEPT, timeline_field, timeline_start
from streams.view.writer import Pending, Published, View, output_items

_CHUNK = 2000  # users per write_many: one round trip each

_KIND_ORDER = {Kind.LIFECYCLE: 0, Kind.RECALL: 1, Kind.WARNING: 2, Kind.TIER: 3, Kind.RFM: 4}
_WIRE_ONLY = (
    "schema_version",
    "kind",
    "idempotency_key",
    "user_id",
    "event_time",
    "event_time_ms",
    "emitted_at",
)


async def read_topic(bootstrap: str, topic: str) -> list[Any]:
    """Every record of `topic` up to the high watermarks at the time of the call."""
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap, group_id=None, enable_auto_commit=False
    )
    await consumer.start()
    records: list[Any] = []
    try:
        await consumer._client.force_metadata_update()
        parts = consumer.partitions_for_topic(topic) or set()
        tps = [TopicPartition(topic, p) for p in sorted(parts)]
        if not tps:
            return records
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        while True:
            batch = await consumer.getmany(timeout_ms=500)
            for msgs in batch.values():
                records.extend(msgs)
            marks = [consumer.highwater(tp) for tp in tps]
            positions = [await consumer.position(tp) for tp in tps]
            if all(m is not None and p >= m for m, p in zip(marks, positions, strict=True)):
                return records
    finally:
        await consumer.stop()


def latest_states(records: list[Any]) -> dict[str, UserState]:
    """The table as its changelog holds it."""
    table: dict[str, UserState] = {}
    for r in records:
        user = r.key.decode()
        if r.value is None:
            table.pop(user, None)
        else:
            table[user] = decode_state(r.value)
    return table


def _output(doc: dict[str, Any]) -> Output:
    payload = {k: v for k, v in doc.items() if k not in _WIRE_ONLY}
    return Output(
        doc["kind"], doc["user_id"], doc["event_time_ms"], doc["idempotency_key"], payload
    )


def recent_outputs(values: list[bytes]) -> dict[str, list[Published]]:
    """Per user, the last TRANSITIONS_KEPT distinct published outputs in emission order.

    Per user, outputs are emitted in event-time order, lifecycle before recall reactivation
    before warning before tier before RFM segment within one decision, so sorting on that
    restores the order across the output topics.
    """
    seen: set[str] = set()
    per_user: dict[str, list[Published]] = defaultdict(list)
    for value in values:
        doc = msgspec.json.decode(value)
        if doc["idempotency_key"] in seen:
            continue  # an at-least-once repeat
        seen.add(doc["idempotency_key"])
        per_user[doc["user_id"]].append((_output(doc), value.decode()))
    for outs in per_user.values():
        outs.sort(key=lambda p: (p[0].ts, _KIND_ORDER[p[0].kind]))
        del outs[:-TRANSITIONS_KEPT]
    return per_user


# Replaces the lifecycle timeline (keys.py, {p}:timeline*) in one step. ARGV: prefix, bucket
# width ms, msgpack [[start, [field, n, field, n, ...]], ...].
_REPLACE_TIMELINE_LUA = """
local index = ARGV[1] .. ':timeline'
for _, old in ipairs(redis.call('ZRANGE', index, 0, -1)) do
  redis.call('DEL', index .. ':' .. old)
end
redis.call('DEL', index, index .. ':width')
local buckets = cmsgpack.unpack(ARGV[3])
for _, b in ipairs(buckets) do
  redis.call('ZADD', index, b[1], b[1])
  redis.call('HSET', index .. ':' .. b[1], unpack(b[2]))
end
if #buckets > 0 then redis.call('SET', index .. ':width', ARGV[2]) end
return #buckets
"""


def timeline(
    values: list[bytes], users: set[str], width_ms: int, kept: int
) -> dict[int, Counter[str]]:
    """The lifecycle timeline the worker's writes add up to, from the published outputs.

    Every distinct lifecycle change counts once in the bucket of its event time, as the
    worker counts it when it writes the state that made it. A user the changelog no longer
    holds (`users`: those it does) was erased: their last stage is left in the newest bucket,
    as the worker's erasure does, so the stage counts and the series still agree. Only the
    newest bucket and those within `kept` widths of it stay.
    """
    seen: set[str] = set()
    buckets: dict[int, Counter[str]] = defaultdict(Counter)
    last: dict[str, tuple[int, str]] = {}
    for value in values:
        doc = msgspec.json.decode(value)
        if doc.get("kind") != Kind.LIFECYCLE or doc["idempotency_key"] in seen:
            continue
        seen.add(doc["idempotency_key"])
        ts, to_stage = doc["event_time_ms"], doc["to_stage"]
        buckets[timeline_start(ts, width_ms)][timeline_field(doc["from_stage"], to_stage)] += 1
        if doc["user_id"] not in last or last[doc["user_id"]][0] <= ts:
            last[doc["user_id"]] = (ts, to_stage)
    if not buckets:
        return {}
    newest = max(buckets)
    for user, (_, stage) in last.items():
        if user not in users:
            buckets[newest][timeline_field(stage, None)] += 1
    return {s: c for s, c in buckets.items() if s > newest - kept * width_ms}


async def replace_timeline(view: View, buckets: dict[int, Counter[str]]) -> None:
    """Store `buckets` as the view's timeline, in place of what it holds (one script call)."""
    packed = msgspec.msgpack.encode(
        [
            [str(start), [x for field, n in sorted(c.items()) for x in (field, str(n))]]
            for start, c in sorted(buckets.items())
            if c
        ]
    )
    await view.client.eval(_REPLACE_TIMELINE_LUA, 0, view.prefix, view.timeline_bucket_ms, packed)


async def rebuild_view(settings: WorkerSettings, view: View) -> int:
    """Write every user of the changelog into the view; returns the number written."""
    changelog = f"{settings.app_id}-user-state-changelog"
    states = latest_states(await read_topic(settings.bootstrap, changelog))
    raw: list[bytes] = []
    for topic in (
        settings.lifecycle_topic,
        settings.warnings_topic,
        settings.tiers_topic,
        settings.rfm_topic,
    ):
        raw += [r.value for r in await read_topic(settings.bootstrap, topic)]
    outputs = recent_outputs(raw)
    written = 0
    users = list(states.items())
    for start in range(0, len(users), _CHUNK):
        chunk = users[start : start + _CHUNK]
        items = {u: Pending(s, output_items(outputs.get(u, []))) for u, s in chunk}
        written += await view.write_many(items)
    # The state writes above counted only the changes of the outputs they carry, and only
    # where the view lacked the state: the series is recounted from every published change.
    series = timeline(raw, set(states), view.timeline_bucket_ms, view.timeline_buckets)
    await replace_timeline(view, series)
    return written
