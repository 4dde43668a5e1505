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

`build_app` wires it: `Processor` (processor.py) and `Batch` (batch.py) handle the records,
`Partitions` (partitions.py) keeps each partition's indexes and offsets, `gauges.py` the metrics,
`ticks.py` the tick records, `exits.py` the exits when going on would be wrong.
"""

from __future__ import annotations

import logging
from typing import Any

import faust

from streams.core.policy import Policy
from streams.settings import WorkerSettings
from streams.worker.consumer import PulseTransport, RecordBatch
from streams.worker.exits import EXIT_BATCH_FAILED, stop_process
from streams.worker.gauges import refresh_gauges
from streams.worker.processor import Processor
from streams.worker.tansu import TansuTransport

log = logging.getLogger("pulse.worker")


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
            stop_process(f"a batch failed with {exc!r}", EXIT_BATCH_FAILED)

    # The conductor subscribes to the topics; the consumer delivers their records in batches.
    app.topics.add(proc.source)
    app.batch_topics = frozenset(proc.source.topics)
    app.batch_handler = on_batch

    @app.on_partitions_revoked.connect  # type: ignore[arg-type]
    async def _forget_indexes(app: Any, revoked: Any, **kwargs: Any) -> None:
        proc.partitions.forget_indexes()
        # Positions read before the rebalance would make lag (and tick holding) count from a
        # stale offset once partitions come back; the committed offsets take over.
        proc.partitions.read_offsets.clear()

    @app.on_rebalance_complete.connect  # type: ignore[arg-type]
    async def _build_indexes(app: Any, **kwargs: Any) -> None:
        # Sent once the tables are recovered, before the streams resume and the worker says
        # it is ready: the pass over the table (about a second per 100k users here) happens
        # now, not inside the first batch, where the events behind it would wait for it.
        proc.partitions.build_indexes()

    if settings.sweep_interval_seconds > 0:

        @app.timer(settings.sweep_interval_seconds)  # type: ignore[untyped-decorator]
        async def _tick() -> None:
            await proc.send_ticks()

    if proc.writer is not None:
        writer = proc.writer

        @app.task  # type: ignore[untyped-decorator]
        async def _view_writer() -> None:
            await writer.run()

        @app.on_before_shutdown.connect  # type: ignore[arg-type]
        async def _drain_view(app: Any, **kwargs: Any) -> None:
            # Sent once the fetcher stopped (no batch runs after it), before the tasks stop.
            await writer.drain()

    @app.timer(15.0)  # type: ignore[untyped-decorator]
    async def _gauges() -> None:
        refresh_gauges(proc)

    return app, proc
