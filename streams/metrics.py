"""The worker's Prometheus metrics (its own prometheus-client registry, not Faust's sensor)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server

REGISTRY = CollectorRegistry()

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
CONSUME_TO_EMIT = Histogram(
    "pulse_consume_to_emit_seconds",
    "From consuming a record to its outputs being acknowledged by the broker",
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
    registry=REGISTRY,
)
EVENT_TIME_TO_EMIT = Histogram(
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
