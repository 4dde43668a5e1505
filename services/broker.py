"""The API's Kafka producer: started on first use, so the API starts (and serves reads) while
the broker is down; every failure to reach the broker is a `BrokerUnavailable` (answered 503).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

from aiokafka import AIOKafkaProducer

log = logging.getLogger("pulse.api")


class BrokerUnavailable(Exception):
    """The broker could not be reached or did not acknowledge in time."""


class EventProducer:
    """Sends records to one topic and waits for the broker's acknowledgement (acks=all)."""

    def __init__(self, bootstrap: str, topic: str, timeout: float) -> None:
        self.bootstrap = bootstrap
        self.topic = topic
        self.timeout = timeout
        self._producer: Any = None
        self._lock = asyncio.Lock()

    async def _started(self) -> Any:
        if self._producer is not None:
            return self._producer
        async with self._lock:
            if self._producer is None:
                producer = AIOKafkaProducer(
                    bootstrap_servers=self.bootstrap,
                    acks="all",
                    linger_ms=2,
                    request_timeout_ms=int(self.timeout * 1000),
                    client_id="pulse-api",
                )
                try:
                    await asyncio.wait_for(producer.start(), self.timeout)
                except Exception as exc:
                    with contextlib.suppress(Exception):
                        await producer.stop()
                    log.warning("broker unavailable: %s", type(exc).__name__)
                    raise BrokerUnavailable(f"cannot connect to the broker: {exc}") from exc
                self._producer = producer
        return self._producer

    async def send_all(self, records: list[tuple[bytes, bytes | None]]) -> None:
        """Send (key, value) records in order; return once the broker acknowledged all of them.

        Raises BrokerUnavailable (some records may have been written: the caller reports none
        as accepted, and the worker drops repeats by event id when the client retries).
        """
        if not records:
            return
        producer = await self._started()
        try:
            async with asyncio.timeout(self.timeout):
                futures = [
                    await producer.send(self.topic, value, key=key) for key, value in records
                ]
                await asyncio.gather(*futures)
        except Exception as exc:
            log.warning("broker did not acknowledge: %s", type(exc).__name__)
            raise BrokerUnavailable(f"the broker did not acknowledge the records: {exc}") from exc

    async def check(self) -> None:
        """Raise BrokerUnavailable unless the broker answers a metadata request."""
        producer = await self._started()
        try:
            await asyncio.wait_for(producer.client.fetch_all_metadata(), self.timeout)
        except Exception as exc:
            raise BrokerUnavailable(f"no metadata from the broker: {exc}") from exc

    async def close(self) -> None:
        if self._producer is not None:
            producer, self._producer = self._producer, None
            with contextlib.suppress(Exception):
                await asyncio.wait_for(producer.stop(), self.timeout)
