"""The Faust worker: a thin shell that feeds records to the pure core and publishes its outputs.

The app consumes two co-partitioned topics, `user-events` and `pulse-ticks`, so the worker that
owns a user's events partition also owns its ticks and the table partition holding its state.
Their records arrive in whole fetch batches (worker.consumer.PulseConsumer) rather than through
a Faust stream: Faust's per-record path alone capped a worker at ~11k records/s. Faust still
runs the group, the assignment, the table and its changelog recovery, commits and timers.
Event records are folded in with `apply_event`; tick records (produced by every worker's timer
for its actively assigned partitions only) let event time pass with `sweep`, which is how
silent users get their warnings. Outputs are acknowledged by the broker *before* the state is
written, so a crash in between re-emits them (same idempotency keys) instead of losing them.
"""

from __future__ import annotations

import logging
import os
import sys
import time
import weakref
from collections import Counter
from collections.abc import Iterator, Sequence
from typing import Any, cast

import faust
import msgspec
import redis.asyncio as aioredis
from faust.streams import _current_event
from faust.types import TP

from streams import metrics
from streams.core.checkpoints import NEVER
from streams.core.contract import InvalidEvent, Reason, parse_event
from streams.core.dlq import dead_letter, encode_dead_letter
from streams.core.engine import Result, Status, apply_event, sweep
from streams.core.lifecycle import Stage
from streams.core.outputs import Kind, Output, encode_output
from streams.core.policy import Policy
from streams.core.state import UserState, decode_state, decode_summary, encode_state
from streams.settings import WorkerSettings
from streams.view.writer import Published, View, ViewWriter
from streams.worker.clock import virtual_now
from streams.worker.consumer import PulseTransport, RecordBatch
from streams.worker.partindex import PartitionIndex
from streams.worker.publisher import LogRewound, Publisher, Record
from streams.worker.tansu import TansuTransport

log = logging.getLogger("pulse.worker")

# The worker's exit status when the broker lost records it had already handled.
EXIT_BROKER_DATA_LOST = 3
# ... and when handling a batch failed (e.g. the broker did not acknowledge its outputs).
EXIT_BATCH_FAILED = 4


class Tick(msgspec.Struct, frozen=True):
    """A tick record: event time has reached `now` in this partition."""

    now: int


_tick_decoder = msgspec.json.Decoder(Tick)
_tick_encoder = msgspec.json.Encoder()


def encode_tick(now_ms: int) -> bytes:
    return _tick_encoder.encode(Tick(now_ms))


class PulseApp(faust.App):
    """faust.App whose Kafka transport can carry the Tansu adapter.

    The consumer hands the records of `batch_topics` to `batch_handler` (see PulseConsumer).
    """

    tansu_compat: bool = False
    batch_topics: frozenset[str] = frozenset()
    batch_handler: RecordBatch | None = None

    def _new_transport(self) -> Any:
        if self.tansu_compat:
            return TansuTransport(self.conf.broker_consumer, self)
        return PulseTransport(self.conf.broker_consumer, self)


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
        # partition -> what Faust's stores read as the current event (see in_partition).
        self.carriers: dict[int, _Carrier] = {}
        self.publisher = Publisher(settings.bootstrap)
        self.changelog_topic: str = self.table.changelog_topic.get_topic_name()
        self.writer: ViewWriter | None = None
        if settings.redis_url:
            client = aioredis.from_url(settings.redis_url)
            view = View(client, settings.view_prefix, policy)
            self.writer = ViewWriter(view, resync=self.view_states)
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
        batch = _Batch(self)
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
            "rebuild-view` (README, Reliability)."
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
        """The partition's due times and counts, rebuilt from the table after a rebalance."""
        index = self.indexes.get(partition)
        if index is None:
            self._rebuild_indexes()
            index = self.indexes.setdefault(partition, PartitionIndex())
        return index

    def _rebuild_indexes(self) -> None:
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

    async def send_ticks(self) -> None:
        now = self.now()
        for partition in self.active_partitions():
            self.check_log(partition)
            if not self.caught_up(partition):
                metrics.TICKS_HELD.inc()
                continue
            await self.ticks.send(key=b"tick", value=encode_tick(now), partition=partition)
            metrics.TICKS_SENT.inc()

    def refresh_gauges(self) -> None:
        active = self.active_partitions()
        metrics.CONSUMER_LAG.clear()
        stages: Counter[str] = Counter()
        tiers: Counter[str] = Counter()
        recall: Counter[tuple[str, str, str, str]] = Counter()
        for partition in active:
            self.check_log(partition)
            lag = self.lag(partition)
            if lag is not None:
                metrics.CONSUMER_LAG.labels(str(partition)).set(lag)
            index = self.indexes.get(partition)
            if index is not None:  # not yet rebuilt: nothing handled since the assignment
                stages.update(index.stages)
                tiers.update(index.tiers)
                recall.update(index.recall)
        for stage in Stage.ALL:
            metrics.USERS_BY_STAGE.labels(stage).set(stages[stage])
        for tier in self.policy.tier_names:
            metrics.USERS_BY_TIER.labels(tier).set(tiers[tier])
        # Cells seen before stay at 0 rather than vanish (a scrape never sees a half update).
        self.recall_cells.update(recall)
        for cell in self.recall_cells:
            metrics.RECALL_WARNINGS.labels(*cell).set(recall[cell])


class _Carrier:
    """What Faust's stores read of the current event: the partition of its message."""

    __slots__ = ("__weakref__", "message", "partition")

    def __init__(self, partition: int) -> None:
        self.message = self
        self.partition = partition


class _Batch:
    """One batch's working set: the users' states as the batch leaves them, and what it sends."""

    def __init__(self, proc: Processor) -> None:
        self.proc = proc
        self.policy = proc.policy
        self.now = proc.now()
        self.before: dict[bytes, UserState | None] = {}
        self.after: dict[bytes, UserState | None] = {}
        self.touched: dict[bytes, int] = {}  # key -> partition, for keys to write back
        self.erased: set[bytes] = set()
        self.published: dict[bytes, list[Published]] = {}
        self.sends: list[Record] = []
        self.outputs: list[Output] = []
        self.dead: Counter[str] = Counter()
        self.consumed = self.applied = self.sweeps = self.swept = 0
        self.skipped: Counter[str] = Counter()

    def state(self, key: bytes) -> UserState | None:
        if key in self.after:
            return self.after[key]
        state = self.proc.load(key)
        self.before[key] = self.after[key] = state
        return state

    def event(self, msg: Any) -> None:
        proc = self.proc
        proc.read_offsets[msg.partition] = msg.offset
        proc.high_marks[msg.partition] = max(proc.high_marks.get(msg.partition, -1), msg.offset)
        self.consumed += 1
        if msg.value is None and msg.key:
            self.erase(bytes(msg.key), msg.partition)
            return
        value = msg.value if isinstance(msg.value, bytes) else b""
        user_id: str | None = None
        try:
            ev = parse_event(
                value,
                msg.key,
                now_ms=self.now,
                min_ts_ms=self.policy.min_valid_ts_ms,
                max_future_skew_ms=int(self.policy.max_future_skew_seconds * 1000),
                max_bytes=proc.settings.max_event_bytes,
            )
            user_id = ev.user_id
            key = ev.user_id.encode()
            result = apply_event(self.state(key), ev, self.policy, msg.partition, msg.offset)
        except InvalidEvent as exc:
            self.dead_letter(msg, exc.reason, exc.detail, exc.user_id)
            return
        except Exception as exc:  # a defect must not stop the partition: park the record
            log.exception("internal error on %s[%s]@%s", msg.topic, msg.partition, msg.offset)
            self.dead_letter(msg, Reason.INTERNAL_ERROR, repr(exc)[:500], user_id)
            return
        if result.status in (Status.DUPLICATE, Status.REDELIVERED):
            self.skipped[result.status] += 1
        else:
            self.applied += 1
        self.take(key, msg.partition, result)

    def tick(self, msg: Any) -> None:
        try:
            now = _tick_decoder.decode(msg.value).now
        except msgspec.DecodeError:
            log.warning("ignoring a malformed tick at %s@%s", msg.partition, msg.offset)
            return
        self.sweeps += 1
        index = self.proc.index(msg.partition)
        for key in index.pop_due(now):
            state = self.state(key)
            if state is None or state.partition != msg.partition:
                continue
            result = sweep(state, now, self.policy)
            if result.status == Status.SWEPT:
                self.swept += 1
                self.take(key, msg.partition, result)
            else:  # a stale due time: back to its checkpoint
                index.schedule(key, state.next_check)

    def erase(self, key: bytes, partition: int) -> None:
        """A tombstone (key = user id, no value) erases the user: table, index, view."""
        state = self.state(key)
        if state is not None:
            self.proc.index(state.partition).schedule(key, NEVER)
        self.after[key] = None
        self.touched[key] = partition
        self.erased.add(key)
        self.published.pop(key, None)

    def take(self, key: bytes, partition: int, result: Result) -> None:
        for out in result.outputs:
            value = encode_output(out, self.now)
            self.published.setdefault(key, []).append((out, value.decode()))
            self.sends.append(Record(self.proc.settings.output_topics[out.kind], key, value))
            self.outputs.append(out)
        if result.changed:
            self.after[key] = result.state
            self.touched[key] = partition
            # Due times follow the working state at once: a later tick of this batch sees them.
            self.proc.index(partition).schedule(key, result.state.next_check)

    def dead_letter(self, msg: Any, reason: str, detail: str, user_id: str | None) -> None:
        doc = self.proc.dead_letter_doc(msg, reason, detail, user_id)
        self.sends.append(Record(self.proc.settings.dlq_topic, msg.key, doc))
        self.dead[reason] += 1

    async def commit(self, consumed: float) -> None:
        """Send everything, wait for the broker's acks, then write the states."""
        try:
            await self._commit(consumed)
        except LogRewound as exc:
            self.proc.data_lost(str(exc))

    async def _commit(self, consumed: float) -> None:
        publisher = self.proc.publisher
        if self.sends:
            await publisher.publish(self.sends)
        self._count(consumed)
        changelog: list[Record] = []
        current = None
        for key, partition in sorted(self.touched.items(), key=lambda kv: kv[1]):
            if partition != current:
                self.proc.in_partition(partition)
                current = partition
            record = self._write(key, partition)
            if record is not None:
                changelog.append(record)
        _current_event.set(None)
        # The changelog records are published together and acknowledged before the batch's
        # input offsets can be committed, not through `table[key] = value`: that path queues
        # one record at a time and throttles consumption while more than 100 wait (measured
        # here: 2.4k events/s).
        if changelog:
            store: Any = self.proc.table.data
            for (topic, partition), offset in (await publisher.publish(changelog)).items():
                store.set_persisted_offset(TP(topic, partition), offset)  # rocksdb resumes here

    def _write(self, key: bytes, partition: int) -> Record | None:
        """Store the batch's final state of `key`; returns its changelog record, if any."""
        proc = self.proc
        store, writer = proc.table.data, proc.writer
        old, new = self.before.get(key), self.after[key]
        record: Record | None = None
        changelog = proc.changelog_topic
        if key in self.erased:
            if old is not None:
                proc.index(old.partition).count(old, None)
                old = None
            if new is None and key in store:
                del store[key]
                record = Record(changelog, key, None, partition)
            if writer is not None:
                writer.erase(key.decode(errors="replace"))
        if new is None:
            return record
        if new is not old:
            raw = encode_state(new)
            store[key] = raw
            record = Record(changelog, key, raw, partition)
            if writer is not None:
                writer.put(new, self.published.get(key, []))
        proc.index(partition).count(old, new)
        return record

    def _count(self, consumed: float) -> None:
        if self.consumed:
            metrics.EVENTS_CONSUMED.inc(self.consumed)
            metrics.LAST_CONSUMED.set(time.time())
        if self.applied:
            metrics.EVENTS_APPLIED.inc(self.applied)
        for kind, n in self.skipped.items():
            metrics.EVENTS_SKIPPED.labels(kind).inc(n)
        for reason, n in self.dead.items():
            metrics.DLQ.labels(reason).inc(n)
        if self.sweeps:
            metrics.SWEEPS.inc(self.sweeps)
        if self.swept:
            metrics.SWEPT_USERS.inc(self.swept)
        if self.erased:
            metrics.ERASURES.inc(len(self.erased))
        if self.outputs:
            latency = time.perf_counter() - consumed
            kinds: Counter[str] = Counter()
            stages: Counter[str] = Counter()
            for out in self.outputs:
                kinds[out.kind] += 1
                if out.kind == Kind.LIFECYCLE:
                    stages[out.payload["to_stage"]] += 1
                metrics.CONSUME_TO_EMIT.observe(latency)
                metrics.EVENT_TIME_TO_EMIT.observe(max(0, self.now - out.ts) / 1000)
            # A labelled child is looked up once per batch, not once per output.
            for kind, n in kinds.items():
                metrics.OUTPUTS.labels(kind).inc(n)
            for stage, n in stages.items():
                metrics.STAGE_CHANGES.labels(stage).inc(n)


def build_app(settings: WorkerSettings, policy: Policy) -> tuple[PulseApp, Processor]:
    """The Faust app with its table, topics, batch handler and timers."""
    app = PulseApp(
        settings.app_id,
        broker=settings.broker_url,
        store=settings.store,
        datadir=settings.data_dir,
        topic_partitions=settings.partitions,
        topic_replication_factor=settings.replication_factor,
        broker_session_timeout=settings.session_timeout_seconds,
        broker_heartbeat_interval=1,
        consumer_auto_offset_reset="earliest",
        producer_acks=-1,
        # Big batches with a short linger: outputs and changelog records leave a batch together;
        # aiokafka's 16 KB default made every send wait for the previous request's ack.
        producer_max_batch_size=1_048_576,
        producer_linger=0.005,
        # The most records one fetch, hence one batch, hands to the worker.
        broker_max_poll_records=settings.batch_max,
        web_enabled=False,
        web_bind="127.0.0.1",
        autodiscover=False,
    )
    app.tansu_compat = settings.tansu_compat
    proc = Processor(app, settings, policy)

    async def on_batch(records: list[Any], fetched_at: float) -> None:
        try:
            await proc.on_batch(records, fetched_at)
        except Exception as exc:
            # Nothing of the failed batch was acknowledged or committed, so exiting is as safe
            # as a kill -9, and the restart is visible (retrying in place would hide a defect).
            log.exception("the batch failed")
            proc.stop_process(f"a batch failed with {exc!r}", EXIT_BATCH_FAILED)

    # The conductor subscribes to the topics; the consumer delivers their records in batches.
    app.topics.add(proc.source)
    app.batch_topics = frozenset(proc.source.topics)
    app.batch_handler = on_batch

    @app.on_partitions_revoked.connect  # type: ignore[arg-type]
    async def _forget_indexes(app: Any, revoked: Any, **kwargs: Any) -> None:
        proc.indexes.clear()
        # Positions read before the rebalance would make lag (and tick holding) count from a
        # stale offset once partitions come back; the committed offsets take over.
        proc.read_offsets.clear()

    if settings.sweep_interval_seconds > 0:

        @app.timer(settings.sweep_interval_seconds)  # type: ignore[untyped-decorator]
        async def _tick() -> None:
            await proc.send_ticks()

    if proc.writer is not None:
        writer = proc.writer

        @app.task  # type: ignore[untyped-decorator]
        async def _view_writer() -> None:
            await writer.run()

    @app.timer(15.0)  # type: ignore[untyped-decorator]
    async def _gauges() -> None:
        proc.refresh_gauges()

    return app, proc
