"""The Faust worker: a thin shell that feeds records to the pure core and publishes its outputs.

One agent consumes two co-partitioned topics, `user-events` and `pulse-ticks`, so the worker that
owns a user's events partition also owns its ticks and the table partition holding its state.
Event records are folded in with `apply_event`; tick records (produced by every worker's timer
for its actively assigned partitions only) let event time pass with `sweep`, which is how
silent users get their warnings. Outputs are acknowledged by the broker *before* the state is
written, so a crash in between re-emits them (same idempotency keys) instead of losing them.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter
from typing import Any

import faust
import msgspec
import redis.asyncio as aioredis
from faust.types import TP

from streams import metrics
from streams.clock import virtual_now
from streams.contract import InvalidEvent, Reason, parse_event
from streams.dlq import dead_letter, encode_dead_letter
from streams.engine import Result, Status, apply_event, sweep
from streams.lifecycle import Stage
from streams.outputs import Output, encode_output
from streams.policy import Policy
from streams.settings import WorkerSettings
from streams.state import UserState, decode_state, encode_state
from streams.tansu import TansuTransport
from streams.view import Published, View, ViewWriter

log = logging.getLogger("pulse.worker")


class Tick(msgspec.Struct, frozen=True):
    """A tick record: event time has reached `now` in this partition."""

    now: int


_tick_decoder = msgspec.json.Decoder(Tick)
_tick_encoder = msgspec.json.Encoder()


def encode_tick(now_ms: int) -> bytes:
    return _tick_encoder.encode(Tick(now_ms))


class PulseApp(faust.App):
    """faust.App whose Kafka transport can carry the Tansu adapter."""

    tansu_compat: bool = False

    def _new_transport(self) -> Any:
        if self.tansu_compat:
            return TansuTransport(self.conf.broker_consumer, self)
        return super()._new_transport()


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
        # partition -> {user key: next checkpoint}; rebuilt from the table after a rebalance.
        self.due: dict[int, dict[bytes, int]] = {}
        self.writer: ViewWriter | None = None
        if settings.redis_url:
            client = aioredis.from_url(settings.redis_url)
            self.writer = ViewWriter(View(client, settings.view_prefix, policy))
        # partition -> offset of the last events record handled here.
        self.read_offsets: dict[int, int] = {}

    def now(self) -> int:
        s = self.settings
        return virtual_now(int(time.time() * 1000), s.clock_origin_ms, s.clock_rate)

    # -- records ------------------------------------------------------------------------
    async def on_record(self, event: Any) -> None:
        msg = event.message
        if msg.topic == self.settings.ticks_topic:
            await self.on_tick(msg)
        else:
            await self.on_event(msg)

    async def on_event(self, msg: Any) -> None:
        consumed = time.perf_counter()
        self.read_offsets[msg.partition] = msg.offset
        metrics.EVENTS_CONSUMED.inc()
        metrics.LAST_CONSUMED.set(time.time())
        if msg.value is None and msg.key:
            await self.on_erase(msg)
            return
        value = msg.value if isinstance(msg.value, bytes) else b""
        user_id: str | None = None
        try:
            ev = parse_event(
                value,
                msg.key,
                now_ms=self.now(),
                min_ts_ms=self.policy.min_valid_ts_ms,
                max_future_skew_ms=int(self.policy.max_future_skew_seconds * 1000),
                max_bytes=self.settings.max_event_bytes,
            )
            user_id = ev.user_id
            key = ev.user_id.encode()
            result = apply_event(self._load(key), ev, self.policy, msg.partition, msg.offset)
        except InvalidEvent as exc:
            await self._dead_letter(msg, exc.reason, exc.detail, exc.user_id)
            return
        except Exception as exc:  # a defect must not stop the partition: park the record
            log.exception("internal error on %s[%s]@%s", msg.topic, msg.partition, msg.offset)
            await self._dead_letter(msg, Reason.INTERNAL_ERROR, repr(exc)[:500], user_id)
            return
        if result.status in (Status.DUPLICATE, Status.REDELIVERED):
            metrics.EVENTS_SKIPPED.labels(result.status).inc()
        else:
            metrics.EVENTS_APPLIED.inc()
        await self._commit(key, msg.partition, result, consumed)

    async def on_erase(self, msg: Any) -> None:
        """A tombstone (key = user id, no value) erases the user: table, due index, view."""
        key = bytes(msg.key)
        if key in self.table:
            del self.table[key]
        for index in self.due.values():
            index.pop(key, None)
        if self.writer is not None:
            self.writer.erase(key.decode(errors="replace"))
        metrics.ERASURES.inc()

    async def on_tick(self, msg: Any) -> None:
        try:
            now = _tick_decoder.decode(msg.value).now
        except msgspec.DecodeError:
            log.warning("ignoring a malformed tick at %s@%s", msg.partition, msg.offset)
            return
        consumed = time.perf_counter()
        metrics.SWEEPS.inc()
        due = self._due_index(msg.partition)
        for key in [k for k, t in due.items() if t <= now]:
            state = self._load(key)
            if state is None or state.partition != msg.partition:
                due.pop(key, None)
                continue
            result = sweep(state, now, self.policy)
            if result.status == Status.SWEPT:
                metrics.SWEPT_USERS.inc()
                await self._commit(key, msg.partition, result, consumed)

    # -- helpers ------------------------------------------------------------------------
    def _load(self, key: bytes) -> UserState | None:
        raw = self.table.get(key)
        return decode_state(raw) if raw else None

    async def _commit(self, key: bytes, partition: int, result: Result, consumed: float) -> None:
        """Publish outputs, wait for the broker's acks, then write the state."""
        published: list[Published] = []
        if result.outputs:
            published = await self._emit(result.outputs)
            metrics.CONSUME_TO_EMIT.observe(time.perf_counter() - consumed)
        if result.changed:
            self.table[key] = encode_state(result.state)
            self._due_index(partition)[key] = result.state.next_check
            if self.writer is not None:
                self.writer.put(result.state, published)

    async def _emit(self, outputs: tuple[Output, ...]) -> list[Published]:
        """Publish and wait for the broker's acks; returns what was published."""
        now = self.now()
        pending = []
        published: list[Published] = []
        for out in outputs:
            value = encode_output(out, now)
            published.append((out, value.decode()))
            topic = self.outputs[out.kind]
            pending.append(await topic.send(key=out.user_id.encode(), value=value))
        await asyncio.gather(*pending)
        for out in outputs:
            metrics.OUTPUTS.labels(out.kind).inc()
            metrics.EVENT_TIME_TO_EMIT.observe(max(0, now - out.ts) / 1000)
        return published

    async def _dead_letter(self, msg: Any, reason: str, detail: str, user_id: str | None) -> None:
        doc = dead_letter(
            reason=reason,
            detail=detail,
            user_id=user_id,
            topic=msg.topic,
            partition=msg.partition,
            offset=msg.offset,
            timestamp_ms=msg.timestamp and int(msg.timestamp * 1000),
            key=msg.key,
            value=msg.value,
            received_at_ms=self.now(),
        )
        fut = await self.dlq.send(key=msg.key, value=encode_dead_letter(doc))
        await fut
        metrics.DLQ.labels(reason).inc()

    def _due_index(self, partition: int) -> dict[bytes, int]:
        index = self.due.get(partition)
        if index is None:
            index = {}
            for key, raw in self.table.items():
                state = decode_state(raw)
                if state.partition == partition:
                    index[key] = state.next_check
            self.due[partition] = index
        return index

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
            if not self.caught_up(partition):
                metrics.TICKS_HELD.inc()
                continue
            await self.ticks.send(key=b"tick", value=encode_tick(now), partition=partition)
            metrics.TICKS_SENT.inc()

    def refresh_gauges(self) -> None:
        active = set(self.active_partitions())
        metrics.CONSUMER_LAG.clear()
        for partition in active:
            lag = self.lag(partition)
            if lag is not None:
                metrics.CONSUMER_LAG.labels(str(partition)).set(lag)
        stages: Counter[str] = Counter()
        tiers: Counter[str] = Counter()
        for raw in self.table.values():
            state = decode_state(raw)
            if state.partition in active:
                stages[state.stage] += 1
                tiers[state.tier] += 1
        for stage in Stage.ALL:
            metrics.USERS_BY_STAGE.labels(stage).set(stages[stage])
        for tier in self.policy.tier_names:
            metrics.USERS_BY_TIER.labels(tier).set(tiers[tier])


def build_app(settings: WorkerSettings, policy: Policy) -> tuple[PulseApp, Processor]:
    """The Faust app with its table, topics, agent and timers."""
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
        web_enabled=False,
        web_bind="127.0.0.1",
        autodiscover=False,
    )
    app.tansu_compat = settings.tansu_compat
    proc = Processor(app, settings, policy)

    @app.agent(proc.source, name="pulse-core")
    async def process(stream: Any) -> None:
        async for event in stream.events():
            await proc.on_record(event)

    @app.on_partitions_revoked.connect  # type: ignore[arg-type]
    async def _forget_index(app: Any, revoked: Any, **kwargs: Any) -> None:
        proc.due.clear()

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
