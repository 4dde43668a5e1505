"""Typed response bodies (they make /openapi.json describe what the routes really return)."""

from __future__ import annotations

from enum import StrEnum
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


class Stage(StrEnum):
    """A lifecycle stage."""

    new = "new"
    active = "active"
    at_risk = "at_risk"
    dormant = "dormant"
    churned = "churned"
    reactivated = "reactivated"


class WindowFigures(BaseModel):
    model_config = ConfigDict(extra="allow")
    events: int = 0
    by_type: dict[str, int] = Field(default_factory=dict)
    spend: float = 0
    active_days: int = 0


class LifetimeFigures(BaseModel):
    model_config = ConfigDict(extra="allow")
    events: int = 0
    spend: float = 0


class RfmFigures(BaseModel):
    """The user's RFM value segment and scores 1-5 (see docs/rfm.md)."""

    segment: str
    recency: int
    frequency: int
    monetary: int


class UserView(BaseModel):
    """A user's current figures as the worker last wrote them (streams.core.snapshot), plus
    `version` (the view's version of this user, increasing with every change) and
    `updated_at` (the event time of the last change). Times are RFC 3339 UTC."""

    model_config = ConfigDict(extra="allow")
    user_id: str
    version: int
    stage: str
    tier: str | None = None
    risk_score: float = 0
    stage_since: str | None = None
    tier_since: str | None = None
    first_seen: str | None = None
    last_seen: str | None = None
    last_active: str | None = None
    typical_gap_days: float | None = None
    last_warning_at: str | None = None
    last_warning_reason: str | None = None
    windows: dict[str, WindowFigures] = Field(default_factory=dict)
    lifetime: LifetimeFigures | None = None
    rfm: RfmFigures | None = Field(
        default=None, description="RFM value segment; null without a purchase in the RFM window."
    )
    as_of: str | None = None
    updated_at: str | int | None = None


class Transition(BaseModel):
    """One output document as published on its topic (lifecycle_changed, churn_warning,
    tier_changed, recall_reactivated or rfm_segment_changed; the kind-specific fields are those of
    streams/core/schemas/*.schema.json)."""

    model_config = ConfigDict(extra="allow")
    schema_version: int
    kind: str
    idempotency_key: str
    user_id: str
    event_time: str
    event_time_ms: int
    emitted_at: str | None = None


class TransitionList(BaseModel):
    user_id: str
    items: list[Transition]


class SegmentItem(BaseModel):
    user_id: str
    stage: str | None
    tier: str | None
    risk_score: float


class SegmentPage(BaseModel):
    """One page of a segment, by risk descending then user id ascending. `next_cursor` is null
    at the end of the list; a page may hold fewer than `limit` items (even none) when filters
    skip users, so follow `next_cursor` until it is null."""

    items: list[SegmentItem]
    next_cursor: str | None


class WarningCounts(BaseModel):
    last_hour: int
    last_day: int


class Stats(BaseModel):
    users: int = Field(description="Users in the view (the sum of the stage counts).")
    stages: dict[str, int] = Field(description="Users per lifecycle stage (every stage listed).")
    tiers: dict[str, int] = Field(
        description="Users per tier, in the policy's rank order (lowest first; unknown tiers last)."
    )
    rfm_segments: dict[str, int] = Field(
        default_factory=dict,
        description="Users per RFM value segment (every segment of the policy listed); users "
        "without a purchase in the RFM window are in none.",
    )
    warnings: WarningCounts = Field(
        description="Churn warnings whose event time lies within the last hour / day of wall "
        "time (see GET /v1/stats)."
    )
    as_of: str


class RecallGroupFigures(BaseModel):
    """One group's churn warnings in a slice."""

    warned: int = Field(description="Churn warnings issued.")
    open: int = Field(description="Warnings whose attribution window is still running.")
    judged: int = Field(description="Warnings whose window has ended: the rate's sample size.")
    reactivated: int = Field(description="Judged warnings whose user came back in the window.")
    not_reactivated: int = Field(description="Judged warnings whose user did not come back.")
    rate: float | None = Field(description="reactivated / judged; null when nothing is judged.")
    rate_ci_low: float | None = Field(
        default=None, description="Lower bound of the rate's 95% interval (Wilson score)."
    )
    rate_ci_high: float | None = Field(
        default=None, description="Upper bound of the rate's 95% interval (Wilson score)."
    )


class RecallComparison(BaseModel):
    """Treated (contacted) against holdout (not contacted) in one slice."""

    tier: str | None = Field(description="The tier when warned; null: every tier.")
    reason: str | None = Field(description="The warning's reason; null: every reason.")
    treated: RecallGroupFigures
    holdout: RecallGroupFigures
    uplift: float | None = Field(
        description="treated rate - holdout rate; null until both groups have judged warnings."
    )
    ci_low: float | None = Field(description="Lower bound of the uplift's 95% interval.")
    ci_high: float | None = Field(description="Upper bound of the uplift's 95% interval.")


class RecallStats(BaseModel):
    """Did the recall work? Reactivation of warned users, treated against holdout, summed over
    every user's tally in the view (see docs/rules.md, "Did the recall work?")."""

    confidence: float = Field(default=0.95, description="Confidence level of the intervals.")
    interval: Literal["newcombe_hybrid_score"] = Field(
        default="newcombe_hybrid_score",
        description="Newcombe (1998) method 10: the difference of two Wilson score intervals.",
    )
    overall: RecallComparison
    by_tier: list[RecallComparison]
    by_reason: list[RecallComparison]
    by_tier_and_reason: list[RecallComparison]
    as_of: str


class RetentionCohort(BaseModel):
    """One cohort: the users whose first activity fell in one UTC day or ISO week."""

    cohort: str = Field(description="The day (2026-11-22) or ISO week (2026-W48).")
    start: str = Field(description="The cohort's first day (for a week, its Monday), UTC.")
    size: int = Field(description="Users in the cohort.")
    active: list[int | None] = Field(
        description="Index k: users active in period k after the cohort's own (k = 0 is the "
        "cohort's day or week: everyone). Null: the period has not begun on the event-time "
        "clock (`as_of`); the current period counts so far."
    )
    active_rate: list[float | None] = Field(
        description="`active` / `size`: N-day/N-week retention."
    )
    still_active: list[int | None] = Field(
        description="Index k: users active in period k or any later one (unbounded retention)."
    )
    still_active_rate: list[float | None] = Field(description="`still_active` / `size`.")


class RetentionStats(BaseModel):
    """Retention cohorts, oldest first, kept by the worker as events arrive (see
    docs/retention.md)."""

    period: Literal["day", "week"]
    periods: int = Field(
        description="The last period reported (the policy's retention_days or retention_weeks)."
    )
    cohorts: list[RetentionCohort]
    as_of: str


class EventResult(BaseModel):
    index: int = Field(description="Position of the event in the submitted batch (0-based).")
    status: Literal["accepted", "rejected"]
    event_id: str | None = None
    reason: str | None = Field(
        default=None, description="Dead-letter reason code (see docs/contract.md) when rejected."
    )
    detail: str | None = None


class IngestResult(BaseModel):
    accepted: int
    rejected: int
    results: list[EventResult]


class ErasureRequested(BaseModel):
    status: Literal["erasure_requested"] = "erasure_requested"
    user_id: str


class Health(BaseModel):
    status: Literal["ok"] = "ok"


class Readiness(BaseModel):
    status: Literal["ready"] = "ready"
    checks: dict[str, str] = Field(description="'ok' or what failed, per dependency.")


class TimelineBucket(BaseModel):
    """One event-time bucket of the lifecycle timeline. Every stage is listed in each map."""

    start: str = Field(description="The bucket's start, event time (RFC 3339, UTC).")
    start_ms: int = Field(description="The same, in epoch milliseconds.")
    entered: dict[str, int] = Field(
        description="Users who entered each stage in the bucket (lifecycle changes to it)."
    )
    left: dict[str, int] = Field(
        description="Users who left each stage in the bucket (to another stage, or erased)."
    )
    population: dict[str, int] = Field(
        description="Users in each stage at the end of the bucket (on the event-time clock)."
    )


class Timeline(BaseModel):
    """Lifecycle changes per event-time bucket, and the stage populations they add up to."""

    bucket_seconds: int | None = Field(
        description="Width of a bucket (PULSE_TIMELINE_BUCKET_HOURS); null: nothing counted yet."
    )
    stages: list[str] = Field(description="The lifecycle stages, in the lifecycle's order.")
    buckets: list[TimelineBucket] = Field(
        description="Oldest first, consecutive (buckets without a change are listed with zeros)."
    )
    as_of: str = Field(description="The API's event-time clock now (as GET /v1/stats).")


class PriorityItem(BaseModel):
    """A user to act on, with what an operator decides by."""

    user_id: str
    stage: str
    stage_since: str = Field(description="Event time the user entered the stage.")
    tier: str
    risk_score: float = Field(description="Probability-like churn risk in [0, 1].")
    value: float = Field(
        description="Spend over the policy's tier window (`value_window_days`, 90 by default)."
    )
    priority: float = Field(description="risk_score x value: the list's order, descending.")
    last_active: str | None = Field(description="Event time of the last activity, if any.")
    silent_days: float | None = Field(
        description="Days from last_active to the API's event-time clock now (`as_of`)."
    )
    group: Literal["treated", "holdout"] = Field(
        description="Holdout assignment: the group of the user's warning when warned, else "
        "the policy's draw for the user."
    )
    do_not_contact: bool = Field(description="True for holdout users: senders skip them.")


class PriorityPage(BaseModel):
    """One page of users by risk x value descending, then risk descending, then user id."""

    items: list[PriorityItem]
    next_cursor: str | None
    value_window_days: int
    as_of: str = Field(description="The API's event-time clock now (silent_days end here).")
