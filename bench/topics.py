"""Broker-side helpers: create topics, load the input fast, read high watermarks, committed
offsets and the latest value per key of a (changelog) topic.

End offsets always come from Fetch responses (the high watermark) or from the producer's own
acknowledgements: Tansu answers ListOffsets(LATEST) wrongly (see /work/shared/notes/tansu.md).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import TopicAlreadyExistsError


async def create_topics(
    bootstrap: str,
    names: Iterable[str],
    partitions: int,
    configs: dict[str, str] | None = None,
) -> None:
    """Create the topics of `names` that do not exist yet, with `configs` (Tansu's
    DescribeConfigs later returns these and nothing else)."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        missing = [n for n in names if n not in existing]
        if missing:
            try:
                await admin.create_topics(
                    [NewTopic(n, partitions, 1, topic_configs=configs or {}) for n in missing]
                )
            except TopicAlreadyExistsError:
                pass
    finally:
        await admin.close()


def new_producer(bootstrap: str, **overrides: Any) -> AIOKafkaProducer:
    conf: dict[str, Any] = {
        "bootstrap_servers": bootstrap,
        "acks": 1,
        "linger_ms": 5,
        "max_batch_size": 512 * 1024,
        "request_timeout_ms": 60_000,
    }
    conf.update(overrides)
    return AIOKafkaProducer(**conf)


@dataclass
class Loaded:
    """What a load put on the topic: records per partition (= end offsets of a fresh topic)."""

    topic: str
    ends: dict[int, int]
    seconds: float

    @property
    def records(self) -> int:
        return sum(self.ends.values())


async def load(
    bootstrap: str,
    topic: str,
    records: Iterable[tuple[bytes, bytes]],
    *,
    progress: Callable[[int], None] | None = None,
    window: int = 20_000,
) -> Loaded:
    """Produce every record without awaiting each one; returns the end offsets it created.

    Sends are queued into the producer's batches and awaited `window` at a time, which keeps
    the broker busy and memory bounded.
    """
    producer = new_producer(bootstrap)
    await producer.start()
    ends: dict[int, int] = {}
    started = time.perf_counter()
    sent = 0

    def note(metas: list[Any]) -> None:
        for m in metas:
            if m.offset + 1 > ends.get(m.partition, 0):
                ends[m.partition] = m.offset + 1

    try:
        pending: list[asyncio.Future[Any]] = []
        for key, value in records:
            pending.append(await producer.send(topic, value, key=key))
            sent += 1
            if len(pending) >= window:
                note(await asyncio.gather(*pending))
                pending = []
                if progress is not None:
                    progress(sent)
        note(await asyncio.gather(*pending))
        await producer.flush()
    finally:
        await producer.stop()
    return Loaded(topic, ends, time.perf_counter() - started)


async def partitions_of(consumer: AIOKafkaConsumer, topic: str, timeout: float = 30) -> list[int]:
    deadline = time.monotonic() + timeout
    while True:
        parts = consumer.partitions_for_topic(topic)
        if parts:
            return sorted(parts)
        if time.monotonic() > deadline:
            raise RuntimeError(f"topic {topic} has no partitions (does it exist?)")
        await consumer._client.force_metadata_update()
        await asyncio.sleep(0.1)


async def highwaters(bootstrap: str, topic: str, timeout: float = 30) -> dict[int, int]:
    """The log end offset of every partition, from Fetch responses."""
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap, group_id=None, enable_auto_commit=False
    )
    await consumer.start()
    try:
        tps = [TopicPartition(topic, p) for p in await partitions_of(consumer, topic)]
        consumer.assign(tps)
        for tp in tps:
            consumer.seek(tp, 0)
        deadline = time.monotonic() + timeout
        marks: dict[int, int] = {}
        while len(marks) < len(tps):
            if time.monotonic() > deadline:
                raise RuntimeError(f"no high watermark for {topic} within {timeout}s")
            await consumer.getmany(timeout_ms=200, max_records=1)
            for tp in tps:
                hw = consumer.highwater(tp)
                if hw is not None:
                    marks[tp.partition] = hw
        return marks
    finally:
        await consumer.stop()


class GroupWatch:
    """Committed offsets of one consumer group on one topic (admin OffsetFetch)."""

    def __init__(self, bootstrap: str, group: str, topic: str, partitions: Iterable[int]) -> None:
        self.admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
        self.group = group
        self.tps = [TopicPartition(topic, p) for p in partitions]

    async def start(self) -> None:
        await self.admin.start()

    async def close(self) -> None:
        await self.admin.close()

    async def committed(self) -> dict[int, int]:
        # Tansu drops the connection when no partition list is given (tansu.md).
        got = await self.admin.list_consumer_group_offsets(self.group, partitions=self.tps)
        return {tp.partition: max(0, meta.offset) for tp, meta in got.items()}


@dataclass
class Scan:
    """The latest value per key of a topic, as a consumer from the beginning sees it."""

    records: int
    latest: dict[bytes, bytes]
    seconds: float


async def scan_latest(bootstrap: str, topic: str, timeout: float = 600) -> Scan:
    """Read `topic` up to its high watermarks; keep the last value of every key (None: deleted)."""
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap,
        group_id=None,
        enable_auto_commit=False,
        max_partition_fetch_bytes=4 * 1024 * 1024,
        fetch_max_bytes=32 * 1024 * 1024,
    )
    started = time.perf_counter()
    await consumer.start()
    latest: dict[bytes, bytes] = {}
    count = 0
    try:
        tps = [TopicPartition(topic, p) for p in await partitions_of(consumer, topic)]
        consumer.assign(tps)
        for tp in tps:
            consumer.seek(tp, 0)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            batch = await consumer.getmany(timeout_ms=300, max_records=50_000)
            for msgs in batch.values():
                for m in msgs:
                    count += 1
                    if m.value is None:
                        latest.pop(m.key, None)
                    else:
                        latest[m.key] = m.value
            done = True
            for tp in tps:
                hw = consumer.highwater(tp)
                if hw is None or await consumer.position(tp) < hw:
                    done = False
                    break
            if done:
                return Scan(count, latest, time.perf_counter() - started)
        raise RuntimeError(f"reading {topic} did not finish within {timeout}s ({count} records)")
    finally:
        await consumer.stop()
