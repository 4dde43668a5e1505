"""The Tansu adapter: end offsets corrected from the Fetch high watermark."""

from __future__ import annotations

import asyncio
import time
import uuid

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from streams.local.embedded import Server
from streams.worker.tansu import FETCH_MAX_WAIT_MS, corrected_highwaters


async def test_corrected_highwaters_give_the_log_end(broker: Server) -> None:
    bootstrap = f"127.0.0.1:{broker.port}"
    topic = f"adapter-{uuid.uuid4().hex[:8]}"
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    await admin.create_topics([NewTopic(topic, 1, 1)])
    await admin.close()
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=50)
    await producer.start()
    for _batch in range(3):  # several multi-record batches, the case Tansu gets wrong
        futures = [await producer.send(topic, b"x" * 10) for _ in range(25)]
        for f in futures:
            await f
    await producer.stop()

    tp = TopicPartition(topic, 0)
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=None)
    await consumer.start()
    reported = (await consumer.end_offsets([tp]))[tp]
    await consumer.stop()

    fixed = await corrected_highwaters(bootstrap, {tp: reported})
    assert fixed[tp] == 75
    # Tansu reports at most the true end; on Apache Kafka both are 75.
    assert reported <= fixed[tp]


async def test_empty_partitions_need_no_fetch(broker: Server) -> None:
    tp = TopicPartition("never-written", 0)
    assert await corrected_highwaters(f"127.0.0.1:{broker.port}", {tp: 0}) == {tp: 0}


async def _fetch_latency_ms(bootstrap: str, topic: str, wait_ms: int) -> float:
    """Median time from a record's ack to a consumer, idle on the partition, getting it."""
    tp = TopicPartition(topic, 0)
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap, group_id=None, fetch_max_wait_ms=wait_ms
    )
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap)
    await consumer.start()
    await producer.start()
    try:
        consumer.assign([tp])
        await consumer.seek_to_end(tp)
        latencies = []
        for _ in range(3):
            await asyncio.sleep(0.2)  # the consumer is now waiting in a Fetch
            sent = time.perf_counter()
            await producer.send_and_wait(topic, b"x")
            while not await consumer.getmany(tp, timeout_ms=5000):
                pass
            latencies.append((time.perf_counter() - sent) * 1000)
        return sorted(latencies)[1]
    finally:
        await consumer.stop()
        await producer.stop()


async def test_the_adapter_does_not_wait_out_tansus_fetch_hold(broker: Server) -> None:
    """Tansu answers a Fetch only at its max-wait: Faust's fixed 1500 ms delays every quiet
    record by hundreds of ms, the adapter's short wait does not."""
    bootstrap = f"127.0.0.1:{broker.port}"
    topic = f"fetchwait-{uuid.uuid4().hex[:8]}"
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    await admin.create_topics([NewTopic(topic, 1, 1)])
    await admin.close()
    faust_default = await _fetch_latency_ms(bootstrap, topic, 1500)
    adapter = await _fetch_latency_ms(bootstrap, topic, FETCH_MAX_WAIT_MS)
    assert faust_default > 150  # the broker difference the adapter works around
    assert adapter < faust_default / 5
