"""Settings from the environment (prefix PULSE_): what the worker and the API share, and the
worker's own knobs. The defaults run against local servers."""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class SharedSettings(BaseSettings):
    """The knobs every Pulse process reads the same way (broker, topics, Redis view, policy)."""

    model_config = SettingsConfigDict(env_prefix="PULSE_", extra="ignore")

    broker_url: str = "kafka://127.0.0.1:9092"
    events_topic: str = "user-events"
    lifecycle_topic: str = "lifecycle-changes"
    warnings_topic: str = "churn-warnings"
    tiers_topic: str = "tier-changes"
    rfm_topic: str = "rfm-segments"
    # The Redis view for the state API; empty disables it in the worker.
    redis_url: str = "redis://127.0.0.1:6379/0"
    view_prefix: str = "pulse"
    max_event_bytes: int = Field(default=65_536, ge=256)
    log_level: str = "info"
    # The policy (streams.core.policy.load_policy; None: the built-in defaults) and the
    # parameters from `pulse fit` (BG/NBD: P(alive) then enters the risk score). The worker
    # decides with them; the API builds the view's user documents with them.
    policy_file: str | None = None
    churn_model_file: str | None = None

    @property
    def bootstrap(self) -> str:
        """host:port list for aiokafka clients, from the kafka:// URL (';'-separated)."""
        return ",".join(u.split("://", 1)[-1] for u in self.broker_url.split(";"))


class WorkerSettings(SharedSettings):
    """Every knob of the worker process. See docs/configuration.md."""

    app_id: str = "pulse"
    dlq_topic: str = "user-events.dlq"
    ticks_topic: str = "pulse-ticks"
    partitions: int = Field(default=8, ge=1)
    replication_factor: int = Field(default=1, ge=1)
    store: str = "memory://"
    data_dir: str = ".pulse/worker"
    # How often the worker emits tick records that let event time pass for silent users.
    # 0 disables the timer (ticks can still be produced by someone else, e.g. tests).
    sweep_interval_seconds: float = Field(default=5.0, ge=0)
    # Ticks are held back for a partition with more unread events than this.
    tick_max_lag: int = Field(default=0, ge=0)
    # Records are handled in batches: what one fetch returned, at most batch_max records.
    batch_max: int = Field(default=2000, ge=1)
    clock_origin_ms: int = 0
    clock_rate: float = Field(default=1.0, gt=0)
    metrics_host: str = "127.0.0.1"
    metrics_port: int = Field(default=9464, ge=0, le=65535)  # 0 disables the endpoint
    # Correct ListOffsets end offsets from a Fetch high watermark before table recovery
    # (Tansu reports the wrong value; harmless and exact on Apache Kafka).
    tansu_compat: bool = True
    session_timeout_seconds: float = Field(default=10.0, gt=0)
    # Python's garbage-collector thresholds for the worker (gc.set_threshold), e.g. [700,10,10].
    gc_threshold: tuple[int, int, int] = (200_000, 50, 1_000)
    # The lifecycle timeline in the Redis view (streams/view/keys.py): the width of its
    # event-time buckets and how many it keeps (daily, the last 90 days; the demo's clock
    # runs a virtual day in seconds, so days suit it too).
    timeline_bucket_hours: float = Field(default=24.0, gt=0, le=24 * 366)
    timeline_buckets: int = Field(default=90, ge=1, le=10_000)
    # How often the worker writes its pending view updates to Redis: how far the API may
    # trail the stream. A longer interval folds more of a user's updates into one write.
    view_flush_seconds: float = Field(default=0.05, gt=0, le=60)
    # The interval while the worker reads a backlog (a partition with more than batch_max
    # events unread): the view then trails by the backlog anyway, and 2 s wrote 30% fewer
    # times at 1M events / 100k users. Never shorter than view_flush_seconds.
    view_catchup_flush_seconds: float = Field(default=2.0, gt=0, le=60)
    # Pending users that make the writer flush at once, whatever the interval: bounds the
    # memory the updates waiting for Redis hold (the PulseViewBacklog alert's figure).
    view_max_pending: int = Field(default=10_000, ge=1)

    @property
    def timeline_bucket_ms(self) -> int:
        return max(1, round(self.timeline_bucket_hours * 3_600_000))

    @property
    def output_topics(self) -> dict[str, str]:
        return {
            "lifecycle_changed": self.lifecycle_topic,
            "churn_warning": self.warnings_topic,
            "tier_changed": self.tiers_topic,
            # Reactivations attributed to a warning go out with the lifecycle changes.
            "recall_reactivated": self.lifecycle_topic,
            "rfm_segment_changed": self.rfm_topic,
        }
