"""The worker's Kafka consumer: Faust's aiokafka driver with batch delivery and one fix.

Batch delivery (PulseConsumer): the records of the worker's input topics reach it in whole
fetch batches instead of one by one through Faust's streams; see the class.

The fix (PulseConsumerThread), on every broker:

Faust drops records it already fetched when the group generation changes or flow stops
mid-batch, then seeks back to the committed offsets to read them again. aiokafka leaves a
partition without a committed offset where it is, past the dropped records, so a worker that
took over a partition nobody had committed yet lost them (found by tests/reliability: a
rebalance right after a member was killed). This is Faust and aiokafka, not the broker, so it
applies on Apache Kafka too; `streams.worker.tansu` builds on it for the embedded broker.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping
from typing import Any, Protocol

from faust.transport.drivers import aiokafka as faust_aiokafka
from faust.types.tuples import ack_lock
from mode.utils.futures import notify

from streams.metrics import CHANGELOG_RESTORED
from streams.worker.restore import apply_fetch


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


class RecordBatch(Protocol):
    """Receives fetched records of the batch topics, in offset order per partition."""

    async def __call__(self, records: list[Any], fetched_at: float) -> None: ...


class _Stand:
    """Stands for a batch in Faust's unacked set, so a rebalance waits for the batch to end."""

    __slots__ = ("__weakref__", "acked", "refcount", "tp")

    def __init__(self, tp: Any) -> None:
        self.tp = tp
        self.acked = False
        self.refcount = 1


class PulseConsumer(faust_aiokafka.Consumer):
    """Faust's consumer, delivering the records of some topics in whole fetch batches.

    Faust hands every record to the conductor, a channel queue and the stream iterator, and
    acknowledges it on its own: ~90 us of CPU per record here, which capped any Faust agent at
    ~11k records/s before it did any work. The topics in `batch_topics` skip all of that: each
    fetch's records go to `batch_handler` in one call, and once it returns their offsets are
    acknowledged in one step, so Faust's commit loop commits them as usual. Group membership,
    assignment, pausing during table recovery, rebalances (which wait for a batch in flight),
    commits and every other topic (changelogs during recovery) stay Faust's.

    The app says which topics and to which handler (`batch_topics`, `batch_handler`); an app
    without a handler is served the Faust way.
    """

    @property
    def batch_topics(self) -> frozenset[str]:
        topics: frozenset[str] = getattr(self.app, "batch_topics", frozenset())
        return topics

    @property
    def batch_handler(self) -> RecordBatch | None:
        handler: RecordBatch | None = getattr(self.app, "batch_handler", None)
        return handler

    def _new_consumer_thread(self) -> PulseConsumerThread:
        return PulseConsumerThread(self, loop=self.loop, beacon=self.beacon)

    async def _drain_messages(self, fetcher: Any) -> None:
        if self.batch_handler is None:
            await super()._drain_messages(fetcher)
            return
        consumer_should_stop = self._stopped.is_set
        fetcher_should_stop = fetcher._stopped.is_set
        try:
            while not (consumer_should_stop() or fetcher_should_stop()):
                records, active = await self._wait_next_records(1.0)
                await self.sleep(0)  # getmany may return at once for a long time
                if records and not self.should_stop:
                    await self._deliver(records, active)
        except self.consumer_stopped_errors:
            if self.transport.app.should_stop:
                return
            raise
        except asyncio.CancelledError:
            if self.transport.app.should_stop:
                return
            raise

    async def _deliver(self, records: Mapping[Any, list[Any]], active: set[Any] | None) -> None:
        """One fetch: batch topics to the handler, other topics the Faust way, one by one."""
        fetched_at = time.perf_counter()
        generation = self.app.consumer_generation_id
        batch: list[tuple[Any, list[Any]]] = []
        others: list[tuple[Any, list[Any]]] = []
        for tp, recs in records.items():
            # What Faust's getmany checks per record: records fetched before a rebalance or
            # for a paused partition are dropped (Faust seeks back to the committed offsets).
            if not self.flow_active or self.app.consumer_generation_id != generation:
                return
            if active is not None and tp not in active and tp not in self._buffered_partitions:
                continue
            # After a seek Faust's read offset is the next offset to read, later the last one
            # read; like Faust, keep both (a record read twice is a redelivery the core skips).
            read = self._read_offset[tp]
            fresh = recs if read is None else [r for r in recs if r.offset >= read]
            if not fresh:
                continue
            (batch if tp.topic in self.batch_topics else others).append((tp, fresh))
        if others:
            others = await self._restore(others)
        if others:
            # Faust races each record's delivery against a flow suspension (a rebalance), so a
            # delivery blocked on a full queue is given up; one race per fetch does the same
            # for a fraction of the cost (four futures per record made changelog recovery
            # crawl at ~10k records/s).
            await self.wait_first(self._one_by_one(others), self.suspend_flow.wait())
        if batch:
            await self._handle(batch, fetched_at)

    async def _restore(self, runs: list[tuple[Any, list[Any]]]) -> list[tuple[Any, list[Any]]]:
        """Apply changelog fetches to their tables at once (streams/worker/restore.py); returns the
        runs left for Faust's path: other topics, fetches it must take, and the last record of
        a partition that caught up, so that Faust's recovery loop sees that it did."""
        changelogs = self.app.tables.changelog_topics
        left: list[tuple[Any, list[Any]]] = []
        for tp, records in runs:
            if tp.topic not in changelogs:
                left.append((tp, records))
                continue
            caught_up = None
            if not self.app.topics.acks_enabled_for(tp.topic):
                caught_up = await apply_fetch(self.app, tp, records, self._to_message)
            if caught_up is None:
                CHANGELOG_RESTORED.labels("faust").inc(len(records))
                left.append((tp, records))
                continue
            CHANGELOG_RESTORED.labels("fetch").inc(len(records))
            self._read_offset[tp] = records[-1].offset
            if caught_up:
                left.append((tp, records[-1:]))
        return left

    async def _one_by_one(self, runs: list[tuple[Any, list[Any]]]) -> None:
        """Deliver records the Faust way: one at a time to the conductor, with gap tracking."""
        callback, to_message = self.callback, self._to_message
        for tp, records in runs:
            acks = self.app.topics.acks_enabled_for(tp.topic)
            for record in records:
                read = self._read_offset[tp]
                if acks and read is not None and record.offset - read > 1:
                    await self._add_gap(tp, read + 1, record.offset)
                await callback(to_message(tp, record))
                self._read_offset[tp] = record.offset

    async def _handle(self, batch: list[tuple[Any, list[Any]]], fetched_at: float) -> None:
        handler = self.batch_handler
        assert handler is not None
        stand: Any = _Stand(batch[0][0])
        self._unacked_messages.add(stand)
        try:
            await handler([r for _, recs in batch for r in recs], fetched_at)
            with ack_lock:
                for tp, recs in batch:
                    self._ack_range(tp, recs[0].offset, recs[-1].offset)
        finally:
            self._unacked_messages.discard(stand)
            notify(self._waiting_for_ack)
        commit_every = self._commit_every
        if commit_every is not None and self._n_acked >= commit_every:
            self._n_acked = 0
            await self.commit()

    def _ack_range(self, tp: Any, first: int, last: int) -> None:
        """Acknowledge offsets first..last, and the gap since the last read offset."""
        read = self._read_offset[tp]
        if read is not None and read < first:
            first = read + 1  # offsets the log does not hold (compaction, markers)
        committed = self._committed_offset[tp]
        if committed is not None:
            first = max(first, committed)
        offsets = range(first, last + 1)
        self._acked[tp].extend(offsets)
        self._acked_index[tp].update(offsets)
        self._n_acked += len(offsets)
        self._read_offset[tp] = last


class PulseTransport(faust_aiokafka.Transport):
    """Faust's aiokafka transport with the consumer above."""

    Consumer = PulseConsumer
