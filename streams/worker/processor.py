"""What the worker does with a fetched batch: the Faust objects it needs, the users' states it
reads, the ticks and dead letters it sends.

`Processor` holds the Faust objects (table, topics), the partitions' bookkeeping (`Partitions`,
streams/worker/partitions.py), the publisher and the view writer; `Batch`
(streams/worker/batch.py) folds one fetch into the users' states through the core. No business
rules live here.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any

import redis.asyncio as aioredis
from faust.streams import _current_event

from streams import metrics
from streams.core.dlq import dead_letter, encode_dead_letter
from streams.core.eventtime import virtual_now
from streams.core.policy import Policy
from streams.core.state import UserState, decode_state
from streams.settings import WorkerSettings
from streams.view.writer import View, ViewWriter
from streams.worker.batch import Batch
from streams.worker.partitions import Partitions
from streams.worker.publisher import Publisher
from streams.worker.ticks import encode_tick

if TYPE_CHECKING:
    from streams.worker.app import PulseApp


class Processor:
    """Batch handling, with the Faust objects it needs. No business rules live here."""

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
        # Per events partition: due times and counts, handled offsets, lag (partitions.py).
        self.partitions = Partitions(app, settings, self.table)
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
                behind=self.partitions.reading_backlog,
                max_pending=settings.view_max_pending,
            )
        # (group, tier, reason, outcome) label sets of pulse_recall_warnings published so far.
        self.recall_cells: set[tuple[str, str, str, str]] = set()

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
        in_partition = self.partitions.in_partition
        for partition in {r.partition for r in records if r.topic == events_topic}:
            self.partitions.check_log(partition)
        batch = Batch(self)
        partition = None
        try:
            for record in records:
                if record.partition != partition:
                    partition = record.partition
                    in_partition(partition)
                if record.topic == ticks_topic:
                    batch.tick(record)
                else:
                    batch.event(record)
        finally:
            _current_event.set(None)
        await batch.commit(fetched_at)

    # -- states, dead letters, ticks --------------------------------------------------------
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
            # Asked again for every chunk: a rebalance may come between chunks.
            active = set(self.partitions.active_partitions())
            states = [self.load(key) for key in keys[start : start + chunk]]
            yield [s for s in states if s is not None and s.partition in active]

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

    async def send_ticks(self) -> None:
        """A tick to every events partition of this worker that is caught up (see caught_up)."""
        now = self.now()
        partitions = self.partitions
        for partition in partitions.active_partitions():
            partitions.check_log(partition)
            if not partitions.caught_up(partition):
                metrics.TICKS_HELD.inc()
                continue
            await self.ticks.send(key=b"tick", value=encode_tick(now), partition=partition)
            metrics.TICKS_SENT.inc()
