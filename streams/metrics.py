"""The worker's Prometheus metrics (its own prometheus-client registry, not Faust's sensor)."""

from __future__ import annotations

import threading
from bisect import bisect_left
from collections.abc import Iterable, Iterator, Sequence

from prometheus_client import CollectorRegistry, Counter, Gauge, start_http_server
from prometheus_client.core import HistogramMetricFamily
from prometheus_client.utils import INF, floatToGoString

REGISTRY = CollectorRegistry()


class BatchHistogram:
    """A Prometheus histogram observed a batch at a time.

    prometheus-client's `Histogram.observe` takes one value per call, under a lock per bucket
    and one for the sum: about 2 µs. The worker observes every output of a batch, 0.8 outputs
    per event, into two histograms, and all of a batch's outputs share one consume-to-emit
    latency; so the values are counted first and the totals added under one lock. It exposes
    the same series as `Histogram` (`_bucket` with `le`, `_count`, `_sum`).
    """

    def __init__(
        self, name: str, documentation: str, buckets: Sequence[float], registry: CollectorRegistry
    ) -> None:
        self.name = name
        self.documentation = documentation
        self.bounds = (*sorted(float(b) for b in buckets if b != INF), INF)
        self._counts = [0] * len(self.bounds)
        self._sum = 0.0
        self._lock = threading.Lock()
        registry.register(self)

    def observe(self, value: float, times: int = 1) -> None:
        """`times` observations of `value`."""
        i = bisect_left(self.bounds, value)  # a bucket counts the values <= its bound
        with self._lock:
            self._counts[i] += times
            self._sum += value * times

    def observe_all(self, values: Iterable[float]) -> None:
        counts = [0] * len(self.bounds)
        total = 0.0
        bounds = self.bounds
        for v in values:
            counts[bisect_left(bounds, v)] += 1
            total += v
        with self._lock:
            self._counts = [a + b for a, b in zip(self._counts, counts, strict=True)]
            self._sum += total

    def collect(self) -> Iterator[HistogramMetricFamily]:
        with self._lock:
            counts, total = list(self._counts), self._sum
        cumulative, buckets = 0, []
        for bound, n in zip(self.bounds, counts, strict=True):
            cumulative += n
            buckets.append((floatToGoString(bound), cumulative))  # type: ignore[no-untyped-call]
        yield HistogramMetricFamily(self.name, self.documentation, buckets=buckets, sum_value=total)


EVENTS_CONSUMED = Counter(
    "pulse_events_consumed", "Records consumed from the events topic", registry=REGISTRY
)
EVENTS_APPLIED = Counter("pulse_events_applied", "Events folded into user state", registry=REGISTRY)
EVENTS_SKIPPED = Counter(
    "pulse_events_skipped",
    "Events recognised as already applied (kind: duplicate event_id, or redelivered offset)",
    ["kind"],
    registry=REGISTRY,
)
DLQ = Counter("pulse_dlq", "Records sent to the dead-letter topic", ["reason"], registry=REGISTRY)
OUTPUTS = Counter("pulse_outputs", "Output events emitted", ["kind"], registry=REGISTRY)
STAGE_CHANGES = Counter(
    "pulse_stage_changes",
    "Lifecycle stage changes emitted, by the stage entered (reactivations: to_stage=reactivated)",
    ["to_stage"],
    registry=REGISTRY,
)
TICKS_SENT = Counter("pulse_ticks_sent", "Tick records produced by this worker", registry=REGISTRY)
TICKS_HELD = Counter(
    "pulse_ticks_held",
    "Ticks not sent because the partition's events were not yet read up to the high watermark",
    registry=REGISTRY,
)
SWEEPS = Counter(
    "pulse_sweeps", "Tick records applied (one sweep of a partition)", registry=REGISTRY
)
SWEPT_USERS = Counter(
    "pulse_swept_users", "Users whose checkpoints fell due in a sweep", registry=REGISTRY
)
LAST_CONSUMED = Gauge(
    "pulse_last_event_consumed_timestamp_seconds",
    "Wall time of the last record consumed (liveness)",
    registry=REGISTRY,
)
CHANGELOG_RESTORED = Counter(
    "pulse_changelog_records_restored",
    "Changelog records read into the table in recovery and on standbys (path: fetch, a whole"
    " fetch at once; faust, one by one through Faust's recovery loop)",
    ["path"],
    registry=REGISTRY,
)
ERASURES = Counter("pulse_erasures", "Users erased on request (tombstones)", registry=REGISTRY)
VIEW_WRITES = Counter(
    "pulse_view_writes", "User states written to the Redis view", registry=REGISTRY
)
VIEW_WRITE_FAILURES = Counter(
    "pulse_view_write_failures",
    "Failed Redis view flushes (retried with backoff)",
    registry=REGISTRY,
)
VIEW_RESYNCS = Counter(
    "pulse_view_resyncs",
    "Times this worker found the Redis view lost (epoch token changed) and wrote its users again",
    registry=REGISTRY,
)
VIEW_RESYNCED_USERS = Counter(
    "pulse_view_resynced_users",
    "User states written again to the Redis view after it was lost",
    registry=REGISTRY,
)
VIEW_PENDING = Gauge(
    "pulse_view_pending", "Users whose view update waits to be written", registry=REGISTRY
)
CONSUME_TO_EMIT = BatchHistogram(
    "pulse_consume_to_emit_seconds",
    "From consuming a record to its outputs being acknowledged by the broker",
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
    registry=REGISTRY,
)
EVENT_TIME_TO_EMIT = BatchHistogram(
    "pulse_event_time_to_emit_seconds",
    "From an output's event time to its emission (virtual clock)",
    buckets=(0.1, 0.5, 1, 5, 15, 60, 300, 900, 3600, 21600, 86400),
    registry=REGISTRY,
)
CONSUMER_LAG = Gauge(
    "pulse_consumer_lag",
    "Events not yet handled in this worker's actively assigned partitions (high watermark - next)",
    ["partition"],
    registry=REGISTRY,
)
USERS_BY_STAGE = Gauge(
    "pulse_users_by_stage",
    "Users per lifecycle stage in this worker's partitions",
    ["stage"],
    registry=REGISTRY,
)
USERS_BY_TIER = Gauge(
    "pulse_users_by_tier",
    "Users per tier in this worker's partitions",
    ["tier"],
    registry=REGISTRY,
)
USERS_BY_RFM_SEGMENT = Gauge(
    "pulse_users_by_rfm_segment",
    "Users per RFM value segment in this worker's partitions (none: no purchase in the window)",
    ["segment"],
    registry=REGISTRY,
)

RECALL_WARNINGS = Gauge(
    "pulse_recall_warnings",
    "Churn warnings of this worker's users by holdout group, tier and reason when warned, and "
    "outcome: open (attribution window running), reactivated or not_reactivated (judged)",
    ["group", "tier", "reason", "outcome"],
    registry=REGISTRY,
)


def serve(host: str, port: int) -> None:
    """Expose /metrics on host:port (a daemon thread)."""
    start_http_server(port, addr=host, registry=REGISTRY)
