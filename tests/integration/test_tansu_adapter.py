"""The Tansu adapter: end offsets corrected from the Fetch high watermark."""

from __future__ import annotations

import uuid

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from streams.embedded import Server
from streams.tansu import corrected_highwaters


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
