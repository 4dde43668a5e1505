"""The Redis materialized view's key layout: the one contract between the worker that writes
the view and the API that reads it. All keys share a prefix (PULSE_VIEW_PREFIX, default "pulse").

  {p}:user:{user_id}          hash   version (int), stage, tier, risk (float), state (the
                                     user's state as the table's changelog holds it:
                                     streams.core.state.encode_state, msgpack); the API builds
                                     the document from it (streams.core.snapshot.user_document).
                                     A view written before states were stored has `doc` (that
                                     document as JSON) instead, until the user's next write
  {p}:transitions:{user_id}   list   newest first, at most TRANSITIONS_KEPT JSON output documents
                                     (lifecycle_changed, churn_warning, tier_changed, as on the
                                     topics)
  {p}:seg:stage:{stage}       zset   member user_id, score risk
  {p}:seg:tier:{tier}         zset   member user_id, score risk
  {p}:count:stage             hash   stage -> users
  {p}:count:tier              hash   tier -> users
  {p}:seg:rfm:{segment}       zset   member user_id, score risk: the users in an RFM value segment
                                     (streams/core/rfm.py; the user hash's `rfm` field, absent
                                     without a segment)
  {p}:count:rfm               hash   RFM segment -> users
  {p}:warnings                zset   member idempotency_key, score event time ms of the warning
                                     (kept for WARNINGS_KEPT_MS)
  {p}:count:recall            hash   "group|tier|reason|outcome" -> churn warnings (outcome open,
                                     reactivated, not_reactivated; core/recall.py): the sum of
                                     every user's tally, whose own copy is the user hash's
                                     `recall` field (JSON [[group, tier, reason, outcome, n]...],
                                     absent while the user was never warned)
  {p}:timeline               zset   the lifecycle timeline's buckets: member and score the
                                     bucket's start (event time ms); at most TIMELINE_BUCKETS,
                                     the newest and those before it within the kept span
  {p}:timeline:{start}       hash   "from>to" -> lifecycle changes from stage `from` to `to`
                                     whose event time falls in the bucket [start, start+width)
                                     (`from` '' for a user's first stage; `to` '' for a user
                                     erased, counted in the newest bucket at the erasure)
  {p}:timeline:width         string the buckets' width in ms (PULSE_TIMELINE_BUCKET_HOURS)
  {p}:retention:{period}      zset   member cohort (a UTC day number for period "day", an ISO
                                     week number for "week": streams/core/retention.py), score
                                     the same number: the cohorts with users
  {p}:retention:{period}:{cohort}
                              hash   n -> users, a<k> -> users active in period k, s<k> -> users
                                     active in period k or later (k = 0..30 days, 0..26 weeks;
                                     zero counts absent): the sum of every user's part, whose
                                     own copy is the user hash's `retention` field (JSON
                                     [[period, cohort, [k...], last k], ...], absent without a
                                     cohort)
  {p}:epoch                   string a random token; a new one (or none) means Redis lost the
                                     view since a worker last looked, and every worker writes
                                     its users again (streams/view/writer.py, ViewWriter)

Writes are compare-and-set on `version` inside one Lua script, so the per-user hash, the
segment sets and the counts always change together and an older version never overwrites a
newer one; the sets and counts move only when the stage, tier, risk, recall cells or retention
part changed.
The same version again only puts back transitions the list lost (a rebuild), or replaces a
`doc` with the state.
"""

from __future__ import annotations

TRANSITIONS_KEPT = 50
WARNINGS_KEPT_MS = 2 * 86_400_000
# The lifecycle timeline's defaults (WorkerSettings.timeline_bucket_hours, .timeline_buckets):
# daily buckets, the last 90 of them.
TIMELINE_BUCKET_MS = 86_400_000
TIMELINE_BUCKETS = 90


def user_key(prefix: str, user_id: str) -> str:
    return f"{prefix}:user:{user_id}"


def transitions_key(prefix: str, user_id: str) -> str:
    return f"{prefix}:transitions:{user_id}"


def stage_segment_key(prefix: str, stage: str) -> str:
    return f"{prefix}:seg:stage:{stage}"


def tier_segment_key(prefix: str, tier: str) -> str:
    return f"{prefix}:seg:tier:{tier}"


def rfm_segment_key(prefix: str, segment: str) -> str:
    return f"{prefix}:seg:rfm:{segment}"


def rfm_counts_key(prefix: str) -> str:
    return f"{prefix}:count:rfm"


def stage_counts_key(prefix: str) -> str:
    return f"{prefix}:count:stage"


def tier_counts_key(prefix: str) -> str:
    return f"{prefix}:count:tier"


def warnings_key(prefix: str) -> str:
    return f"{prefix}:warnings"


def recall_counts_key(prefix: str) -> str:
    return f"{prefix}:count:recall"


def timeline_key(prefix: str) -> str:
    return f"{prefix}:timeline"


def timeline_bucket_key(prefix: str, start_ms: int) -> str:
    return f"{prefix}:timeline:{start_ms}"


def timeline_width_key(prefix: str) -> str:
    return f"{prefix}:timeline:width"


def timeline_field(from_stage: str | None, to_stage: str | None) -> str:
    """A timeline bucket's field: a change from `from_stage` (None: none) to `to_stage`
    (None: the user was erased)."""
    return f"{from_stage or ''}>{to_stage or ''}"


def parse_timeline_field(field: str) -> tuple[str, str]:
    """Inverse of timeline_field: (from, to), '' for none. Raises ValueError without '>'."""
    from_stage, to_stage = field.split(">")
    return from_stage, to_stage


def timeline_start(ts_ms: int, width_ms: int) -> int:
    """The start of the timeline bucket holding event time `ts_ms`."""
    return ts_ms - ts_ms % width_ms


def retention_cohorts_key(prefix: str, period: str) -> str:
    return f"{prefix}:retention:{period}"


def retention_key(prefix: str, period: str, cohort: int | str) -> str:
    return f"{prefix}:retention:{period}:{cohort}"


def epoch_key(prefix: str) -> str:
    return f"{prefix}:epoch"


def recall_field(group: str, tier: str, reason: str, outcome: str) -> str:
    return f"{group}|{tier}|{reason}|{outcome}"


def parse_recall_field(field: str) -> tuple[str, str, str, str]:
    """Inverse of recall_field (a tier name may itself hold '|'; the others never do)."""
    group, rest = field.split("|", 1)
    tier, reason, outcome = rest.rsplit("|", 2)
    return group, tier, reason, outcome
