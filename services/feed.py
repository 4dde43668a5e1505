"""Server-sent events from the output topics, for the live page.

Each connection gets its own group-less consumer positioned at the end of every partition of
the warnings and tier topics (end offsets corrected for the embedded broker, see
streams/worker/tansu.py), and streams each new record as one SSE message.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

from aiokafka import AIOKafkaConsumer, TopicPartition

from streams.kafka import corrected_highwaters


def sse(event: str, data: bytes) -> bytes:
    """One server-sent-events message (data is one line of JSON)."""
    return b"event: " + event.encode() + b"\ndata: " + data.replace(b"\n", b" ") + b"\n\n"


async def follow(
    bootstrap: str, topics: dict[str, str], heartbeat_s: float = 10.0
) -> AsyncIterator[bytes]:
    """SSE messages for records that arrive on `topics` (name -> event name) from now on."""
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap, group_id=None, enable_auto_commit=False
    )
    await consumer.start()
    try:
        await consumer._client.force_metadata_update()
        tps = [
            TopicPartition(t, p)
            for t in topics
            for p in sorted(consumer.partitions_for_topic(t) or ())
        ]
        consumer.assign(tps)
        ends = await corrected_highwaters(bootstrap, await consumer.end_offsets(tps))
        for tp in tps:
            consumer.seek(tp, ends[tp])
        yield b": connected\n\n"
        while True:
            batch = await consumer.getmany(timeout_ms=int(heartbeat_s * 1000))
            if not batch:
                yield b": keep-alive\n\n"
            for tp, records in batch.items():
                for r in records:
                    yield sse(topics[tp.topic], r.value)
    finally:
        await consumer.stop()
