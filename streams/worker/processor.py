"""What the worker does with a fetched batch, and the per-partition bookkeeping around it.

`Processor` holds the Faust objects (table, topics), the partitions' indexes of due times and
counts, the publisher and the view writer; `Batch` (streams/worker/batch.py) folds one fetch
into the users' states through the core. No business rules live here.
"""

from __future__ import annotations

import logging
import os
import sys
import time
import weakref
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any, cast

import redis.asyncio as aioredis
from faust.streams import _current_event
from faust.types import TP

from streams import metrics
from streams.core.dlq import dead_letter, encode_dead_letter
from streams.core.eventtime import virtual_now
from streams.core.policy import Policy
from streams.core.state import UserState, decode_state, decode_summary
from streams.settings import WorkerSettings
from streams.view.writer import View, ViewWriter
from streams.worker.batch import Batch
from streams.worker.partindex import PartitionIndex
from streams.worker.publisher import Publisher
from streams.worker.ticks import encode_tick

if TYPE_CHECKING:
    from streams.worker.app import PulseApp

log = logging.getLogger("pulse.worker")

# The worker's exit status when the broker lost records it had already handled.
EXIT_BROKER_DATA_LOST = 3
# ... and when handling a batch failed (e.g. the broker did not acknowledge its outputs).
EXIT_BATCH_FAILED = 4


class Processor:
    """Per-record handling, with the Faust objects it needs. No business rules live here."""

    def __init__(self, app: PulseApp, settings: WorkerSettings, policy: Policy) -> None:
        self.app = app
        self.settings = settings
        self.policy = policy
        # bytes in, bytes out: Faust derives the changelog's serializers from these types
        # (anything else falls back to JSON); the state has its own msgpack encoding.
        self.table = app.Table(
            "user-state", key_type=bytes, value_type=bytes, partitions=settings.partitions
        )
        # Topics take the serializers directly: an agent re-derives its channel's schema from
        # these attributes and would fall back to JSON if only `schema=` were given.
        raw: dict[str, Any] = {
            "key_type": bytes,
            "value_type": bytes,
            "key_serializer": "raw",
            "value_serializer": "raw",
            "partitions": settings.partitions,
        }
        self.source = app.topic(settings.events_topic, settings.ticks_topic, **raw)
        self.ticks = app.topic(settings.ticks_topic, **raw)
        self.dlq = app.topic(settings.dlq_topic, **raw)
        self.outputs = {
            kind: app.topic(name, **raw) for kind, name in settings.output_topics.items()
        }
        # partition -> due times and stage/tier counts; rebuilt from the table after a rebalance.
        self.indexes: dict[int, PartitionIndex] = {}
        self.indexes_built = False  # build_indexes ran since the last revocation
        # partition -> what Faust's stores read as the current event (see in_partition).
        self.carriers: dict[int, _Carrier] = {}
        self.publisher = Publisher(settings.bootstrap)
        self.changelog_topic: str = self.table.changelog_topic.get_topic_name()
        self.writer: ViewWriter | None = None
        if settings.redis_url:
            client = aioredis.from_url(settings.redis_url)
            view = View(
                client,
                settings.view_prefix,
                settings.timeline_bucket_ms,
                settings.timeline_buckets,
            )
            self.writer = ViewWriter(
                view,
                interval_s=settings.view_flush_seconds,
                resync=self.view_states,
                catchup_interval_s=settings.view_catchup_flush_seconds,
                behind=self.reading_backlog,
                max_pending=settings.view_max_pending,
            )
        # partition -> offset of the last events record handled here.
        self.read_offsets: dict[int, int] = {}
        # (group, tier, reason, outcome) label sets of pulse_recall_warnings published so far.
        self.recall_cells: set[tuple[str, str, str, str]] = set()
        # partition -> the highest events offset this process ever handled: a log only grows,
        # so a high watermark at or below it means the broker lost the partition's records.
        self.high_marks: dict[int, int] = {}

    def now(self) -> int:
        s = self.settings
        return virtual_now(int(time.time() * 1000), s.clock_origin_ms, s.clock_rate)

    # -- records ------------------------------------------------------------------------
    async def on_batch(self, records: Sequence[Any], fetched_at: float) -> None:
        """Fold a batch of records (events, ticks, tombstones) into the users' states.

        `records` are aiokafka ConsumerRecords of one fetch, in offset order per partition;
        `fetched_at` (perf_counter) is when the fetch returned, the start of consume-to-emit.

        States are read once and written once per user per batch. Outputs and dead letters
        are sent without waiting on each; all are acknowledged by the broker before any state
        is written, so a crash in between re-emits them (same idempotency keys) instead of
        losing them, and the redelivered records are recognised by their offsets.
        """
        events_topic, ticks_topic = self.settings.events_topic, self.settings.ticks_topic
        for partition in {r.partition for r in records if r.topic == events_topic}:
            self.check_log(partition)
        batch = Batch(self)
        partition = None
        try:
            for record in records:
                if record.partition != partition:
                    partition = record.partition
                    self.in_partition(partition)
                if record.topic == ticks_topic:
                    batch.tick(record)
                else:
                    batch.event(record)
        finally:
            _current_event.set(None)
        await batch.commit(fetched_at)

    def in_partition(self, partition: int) -> None:
        """Make the table's reads and writes in this task go to `partition`.

        Faust's stores route by the current event, a context variable no Faust stream sets
        here; without it the rocksdb store looks a key up in every partition's database
        (measured: sweeps 2.3x as costly as on the memory store).
        """
        carrier = self.carriers.get(partition)
        if carrier is None:
            carrier = self.carriers[partition] = _Carrier(partition)
        _current_event.set(weakref.ref(cast(Any, carrier)))

    # -- broker data loss -----------------------------------------------------------------
    def check_log(self, partition: int) -> None:
        """Stop the process if the events partition's log no longer holds what was handled."""
        mark = self.high_marks.get(partition)
        if mark is None:
            return
        highwater = self.app.consumer.highwater(TP(self.settings.events_topic, partition))
        if highwater is not None and highwater <= mark:
            self.data_lost(
                f"{self.settings.events_topic}[{partition}] ends at offset {highwater}, but this "
                f"worker already handled offset {mark} there"
            )

    def data_lost(self, detail: str) -> None:
        """Exit at once (status EXIT_BROKER_DATA_LOST) with a message saying what to do.

        Going on would fold new records into a table the broker no longer backs (its changelog
        and the committed offsets are gone) and skip them as redeliveries. Exiting without
        committing anything is as safe as a kill -9: delivery is at-least-once.
        """
        message = (
            f"the broker lost data this worker already handled ({detail}). "
            "It was probably restarted without its storage (the embedded Tansu keeps "
            "everything in memory). Stopping instead of continuing with a table that the "
            "broker's logs no longer back. Recovery: stop every worker, recreate the topics "
            "(`pulse topics`), republish the input, start the workers, then `pulse "
            "rebuild-view` (docs/operations.md, 'When the broker lost its data')."
        )
        self.stop_process(message, EXIT_BROKER_DATA_LOST)

    def stop_process(self, message: str, status: int) -> None:
        """Log `message` and exit at once with `status`, committing nothing more."""
        log.critical(message)
        print(f"pulse worker: {message}", file=sys.stderr, flush=True)
        logging.shutdown()
        os._exit(status)

    # -- helpers ------------------------------------------------------------------------
    def load(self, key: bytes) -> UserState | None:
        store = self.table.data
        raw = store.get(key)
        if raw is None and _current_event.get() is not None:
            # Not in the current partition's database: a user whose key moved to another
            # partition (e.g. after partitions were added) is still found where it was, as
            # Faust finds keys without a current event (every local database).
            token = _current_event.set(None)
            try:
                raw = store.get(key)
            finally:
                _current_event.reset(token)
        return decode_state(raw) if raw else None

    def view_states(self, chunk: int = 2000) -> Iterator[list[UserState]]:
        """The current states of the users of this worker's active partitions, `chunk` users
        at a time: what this worker writes again when Redis lost the view.

        The keys are listed once (the table changes while the chunks are written); each
        state is read when its chunk is taken, so it is the table's latest.
        """
        keys = list(self.table.keys())
        for start in range(0, len(keys), chunk):
            active = set(self.active_partitions())  # a rebalance may come between chunks
            states = [self.load(key) for key in keys[start : start + chunk]]
            yield [s for s in states if s is not None and s.partition in active]

    def index(self, partition: int) -> PartitionIndex:
        """The partition's due times and counts, rebuilt from the table after a rebalance
        (normally already built when the rebalance completed: build_indexes)."""
        index = self.indexes.get(partition)
        if index is None:
            # Built since the rebalance: the partition had no users then (no second pass).
            if not self.indexes_built:
                self.build_indexes()
            index = self.indexes.setdefault(partition, PartitionIndex())
        return index

    def forget_indexes(self) -> None:
        """Partitions are being revoked: every index is rebuilt after the rebalance."""
        self.indexes.clear()
        self.indexes_built = False

    def build_indexes(self) -> None:
        """One pass over the table for every partition without an index (after a rebalance)."""
        fresh: dict[int, PartitionIndex] = {}
        for key, raw in self.table.items():
            user = decode_summary(raw)
            if user.partition in self.indexes:
                continue
            index = fresh.get(user.partition)
            if index is None:
                index = fresh[user.partition] = PartitionIndex()
            index.load(key, user)
        for partition, index in fresh.items():
            self.indexes[partition] = index.seal()
        self.indexes_built = True

    def dead_letter_doc(self, msg: Any, reason: str, detail: str, user_id: str | None) -> bytes:
        return encode_dead_letter(
            dead_letter(
                reason=reason,
                detail=detail,
                user_id=user_id,
                topic=msg.topic,
                partition=msg.partition,
                offset=msg.offset,
                timestamp_ms=msg.timestamp,  # aiokafka: epoch ms
                key=msg.key,
                value=msg.value,
                received_at_ms=self.now(),
            )
        )

    def active_partitions(self) -> list[int]:
        return sorted(
            tp.partition
            for tp in self.app.assignor.assigned_actives()
            if tp.topic == self.settings.events_topic
        )

    def lag(self, partition: int) -> int | None:
        """Unhandled events in this worker's events partition (None: high watermark unknown)."""
        tp = TP(self.settings.events_topic, partition)
        highwater = self.app.consumer.highwater(tp)
        if highwater is None:
            return None
        if partition in self.read_offsets:
            done = self.read_offsets[partition] + 1
        else:
            # Nothing handled since the assignment: start from the group's committed offset
            # (Faust keeps it privately; the fetch position would count prefetched records).
            consumer: Any = self.app.consumer
            committed = consumer._committed_offset.get(tp)
            done = committed if committed is not None else 0
        return max(0, highwater - done)

    def caught_up(self, partition: int) -> bool:
        """Whether this worker has read the events partition up to its high watermark.

        A tick lets event time pass; sent while a backlog is unread it would run the users'
        clocks ahead of their own events and turn the backlog into "too late" records.
        """
        lag = self.lag(partition)
        return lag is not None and lag <= self.settings.tick_max_lag

    def reading_backlog(self) -> bool:
        """Whether some events partition of this worker has more than a batch unread."""
        limit = self.settings.batch_max
        for partition in self.active_partitions():
            lag = self.lag(partition)
            if lag is not None and lag > limit:
                return True
        return False

    async def send_ticks(self) -> None:
        now = self.now()
        for partition in self.active_partitions():
            self.check_log(partition)
            if not self.caught_up(partition):
                metrics.TICKS_HELD.inc()
                continue
            await self.ticks.send(key=b"tick", value=encode_tick(now), partition=partition)
            metrics.TICKS_SENT.inc()


class _Carrier:
    """What Faust's stores read of the current event: the partition of its message."""

    __slots__ = ("__weakref__", "message", "partition")

    def __init__(self, partition: int) -> None:
        self.message = self
        self.partition = partition
