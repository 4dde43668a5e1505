"""aiokafka-only helpers shared by the worker and the API (no Faust here: the API must not load it).

`corrected_highwaters` is the end-offset half of the Tansu adapter (see `streams.worker.tansu`
for why Tansu needs it); it is exact on Apache Kafka too.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition


async def corrected_highwaters(
    bootstrap: str | list[str], reported: Mapping[Any, int], timeout_s: float = 10.0
) -> dict[Any, int]:
    """End offsets for `reported`'s partitions, raised to the Fetch high watermark.

    Keys may be aiokafka TopicPartitions or Faust TPs (anything with .topic and .partition);
    the result uses the same keys.
    """
    result = dict(reported)
    todo = {TopicPartition(tp.topic, tp.partition): tp for tp, end in reported.items() if end > 0}
    if not todo:
        return result
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap, enable_auto_commit=False, group_id=None
    )
    await consumer.start()
    try:
        consumer.assign(list(todo))
        for atp, tp in todo.items():
            consumer.seek(atp, reported[tp] - 1)
        pending = set(todo)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        while pending and loop.time() < deadline:
            await consumer.getmany(*pending, timeout_ms=200, max_records=1)
            for atp in list(pending):
                hw = consumer.highwater(atp)
                if hw is not None:
                    result[todo[atp]] = max(reported[todo[atp]], hw)
                    pending.discard(atp)
        if pending:
            raise RuntimeError(f"no high watermark from the broker for {sorted(map(str, pending))}")
    finally:
        await consumer.stop()
    return result
