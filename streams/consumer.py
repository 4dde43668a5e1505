"""The worker's Kafka consumer: Faust's aiokafka driver with one fix, on every broker.

Faust drops records it already fetched when the group generation changes or flow stops
mid-batch, then seeks back to the committed offsets to read them again. aiokafka leaves a
partition without a committed offset where it is, past the dropped records, so a worker that
took over a partition nobody had committed yet lost them (found by tests/reliability: a
rebalance right after a member was killed). This is Faust and aiokafka, not the broker, so it
applies on Apache Kafka too; `streams.tansu` builds on it for the embedded broker.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from faust.transport.drivers import aiokafka as faust_aiokafka


class PulseConsumerThread(faust_aiokafka.AIOKafkaConsumerThread):
    async def seek_to_committed(self) -> Mapping[Any, int]:
        """Seek to the committed offsets, and input partitions without one to their start.

        Faust drops records it already fetched when the group generation changes or flow
        stops mid-batch, then seeks back to the committed offsets to read them again. aiokafka
        leaves a partition without a committed offset where it is, past the dropped records:
        a worker that took over a partition nobody had committed yet lost them (seen in
        tests/reliability: a rebalance right after a member was killed). Without a commit,
        the group's position is the log start (auto_offset_reset=earliest); redelivered
        records are recognised by their offsets in the users' states. Changelog partitions
        are left alone: table recovery positions them itself.
        """
        committed: Mapping[Any, int] = await self.call_thread(self._seek_to_committed_or_start)
        return committed

    async def _seek_to_committed_or_start(self) -> Mapping[Any, int]:
        consumer = self._ensure_consumer()
        committed = await consumer.seek_to_committed()
        fresh = [
            tp
            for tp, offset in committed.items()
            if offset is None and not tp.topic.endswith("-changelog")
        ]
        if fresh:
            await consumer.seek_to_beginning(*fresh)
        return dict(committed)


class PulseConsumer(faust_aiokafka.Consumer):
    def _new_consumer_thread(self) -> PulseConsumerThread:
        return PulseConsumerThread(self, loop=self.loop, beacon=self.beacon)


class PulseTransport(faust_aiokafka.Transport):
    """Faust's aiokafka transport with the consumer above."""

    Consumer = PulseConsumer
