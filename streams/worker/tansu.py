"""The one adapter for where Tansu (the embedded broker) differs from Apache Kafka.

Tansu answers ListOffsets(LATEST) with the first offset of the last record batch + 1 instead of
the log end offset, while the high watermark in Fetch responses is right. Faust takes end
offsets as the changelog high water when it recovers a table, so after kill -9 a worker would
recover a table that misses the last batch (memory store) or refuse to start (rocksdb store).

`streams.kafka.corrected_highwaters` (aiokafka only, so the API can use it without Faust)
asks the broker for the high watermark through a Fetch at the reported offset and keeps
the larger of the two. On Apache Kafka both agree, so the adapter is exact there too; it
costs one Fetch per non-empty partition at recovery time.

Tansu also holds every Fetch for its full max-wait, even once records arrive (Apache Kafka
answers as soon as fetch.min.bytes is there). Faust fixes the wait at 1500 ms, which measured
here as ~450 ms from produce to consume on a quiet partition and capped changelog recovery at
~10k records/s; the adapter's consumer waits FETCH_MAX_WAIT_MS instead (~3 ms measured), at
the cost of a few more idle fetches per second on loopback.

Enabled by PULSE_TANSU_COMPAT (default on for the embedded stack; off on Apache Kafka).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from faust.transport.drivers import aiokafka as faust_aiokafka

from streams.kafka import corrected_highwaters
from streams.worker.consumer import PulseConsumer, PulseConsumerThread, PulseTransport

FETCH_MAX_WAIT_MS = 20


class TansuConsumerThread(PulseConsumerThread):
    def _create_worker_consumer(self, transport: Any) -> Any:
        consumer = super()._create_worker_consumer(transport)
        # aiokafka reads it when the consumer starts its fetcher; Faust passes no way to set it.
        consumer._fetch_max_wait_ms = FETCH_MAX_WAIT_MS
        return consumer

    async def _highwaters(self, partitions: list[Any]) -> Mapping[Any, int]:
        reported = await super()._highwaters(partitions)
        if self.consumer.in_transaction:
            return reported
        transport: Any = self.transport
        servers = faust_aiokafka.server_list(transport.url, transport.default_port)
        return await corrected_highwaters(servers, reported)


class TansuConsumer(PulseConsumer):
    def _new_consumer_thread(self) -> TansuConsumerThread:
        return TansuConsumerThread(self, loop=self.loop, beacon=self.beacon)


class TansuTransport(PulseTransport):
    """The aiokafka transport with Tansu-safe end offsets."""

    Consumer = TansuConsumer
