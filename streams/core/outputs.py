"""Output events (lifecycle changes, churn warnings, tier changes) and their wire format.

Every output has a deterministic idempotency key derived from its cause (user, kind, the
transition and the event time it applies to), never from wall-clock time, so a replay or a
redelivery produces the same key and a sender can drop the repeat.
"""

from __future__ import annotations

import hashlib
from typing import Any

import msgspec

from streams.core.eventtime import format_ts

SCHEMA_VERSION = 1


class Kind:
    LIFECYCLE = "lifecycle_changed"
    WARNING = "churn_warning"
    TIER = "tier_changed"
    # A warned user came back within the attribution window (on the lifecycle topic).
    RECALL = "recall_reactivated"
    # The user's RFM value segment changed (core/rfm.py).
    RFM = "rfm_segment_changed"
    ALL = (LIFECYCLE, WARNING, TIER, RECALL, RFM)


class Output(msgspec.Struct, frozen=True):
    """One decision of the core. `ts` is the event time at which the decision became true."""

    kind: str
    user_id: str
    ts: int
    idempotency_key: str
    payload: dict[str, Any]


def idempotency_key(kind: str, user_id: str, *cause: object) -> str:
    """sha256 over kind, user and cause; 32 hex characters."""
    text = "\x1f".join([kind, user_id, *map(str, cause)])
    return hashlib.sha256(text.encode()).hexdigest()[:32]


def lifecycle_changed(
    user_id: str,
    at: int,
    from_stage: str | None,
    to_stage: str,
    reason: str,
    figures: dict[str, Any],
) -> Output:
    key = idempotency_key(Kind.LIFECYCLE, user_id, from_stage or "", to_stage, at)
    payload = {"from_stage": from_stage, "to_stage": to_stage, "reason": reason, "figures": figures}
    return Output(Kind.LIFECYCLE, user_id, at, key, payload)


def warning_key(user_id: str, at: int) -> str:
    """The idempotency key of the churn warning that started an at-risk episode at `at`."""
    # One warning per at-risk episode: the episode starts at `at`, so it is the key's cause.
    return idempotency_key(Kind.WARNING, user_id, at)


def churn_warning(
    user_id: str,
    at: int,
    reason: str,
    risk: float,
    stage_before: str,
    tier: str,
    figures: dict[str, Any],
    group: str = "treated",
) -> Output:
    """`group` is the user's holdout assignment (core/holdout.py): senders skip "holdout"."""
    payload = {
        "reason": reason,
        "risk_score": risk,
        "stage_before": stage_before,
        "tier": tier,
        "group": group,
        "figures": figures,
    }
    return Output(Kind.WARNING, user_id, at, warning_key(user_id, at), payload)


def recall_reactivated(
    user_id: str,
    at: int,
    warned_at: int,
    group: str,
    tier: str,
    warning_reason: str,
    from_stage: str,
    to_stage: str,
    window_days: float,
) -> Output:
    """A user warned at `warned_at` came back (left at_risk, dormant or churned) at `at`,
    within the attribution window; attributed to that warning's idempotency key."""
    wkey = warning_key(user_id, warned_at)
    payload = {
        "warning_key": wkey,
        "warned_at": wire_time(warned_at),
        "warned_at_ms": warned_at,
        "days_to_return": round((at - warned_at) / 86_400_000, 3),
        "group": group,
        "tier": tier,
        "warning_reason": warning_reason,
        "from_stage": from_stage,
        "to_stage": to_stage,
        "attribution_window_days": window_days,
    }
    return Output(Kind.RECALL, user_id, at, idempotency_key(Kind.RECALL, user_id, wkey), payload)


def tier_changed(
    user_id: str,
    at: int,
    from_tier: str | None,
    to_tier: str,
    direction: str,
    reason: str,
    spend_window: float,
    threshold: float,
) -> Output:
    key = idempotency_key(Kind.TIER, user_id, from_tier or "", to_tier, at)
    payload = {
        "from_tier": from_tier,
        "to_tier": to_tier,
        "direction": direction,
        "reason": reason,
        "figures": {"spend_window": spend_window, "threshold": threshold},
    }
    return Output(Kind.TIER, user_id, at, key, payload)


def rfm_segment_changed(
    user_id: str,
    at: int,
    from_segment: str | None,
    to_segment: str | None,
    scores: str,
    recency_days: int | None,
    frequency: int,
    monetary_cents: int,
    window_days: int,
) -> Output:
    """The user's RFM segment went from `from_segment` to `to_segment` at `at` (None: no
    segment, no purchase within the window); `scores` "RFM", e.g. "534" ("" with none)."""
    key = idempotency_key(Kind.RFM, user_id, from_segment or "", to_segment or "", at)
    payload = {
        "from_segment": from_segment,
        "to_segment": to_segment,
        "scores": (
            {"recency": int(scores[0]), "frequency": int(scores[1]), "monetary": int(scores[2])}
            if scores
            else None
        ),
        "figures": {
            "recency_days": recency_days,
            "frequency": frequency,
            "monetary": monetary_cents / 100,
            "window_days": window_days,
        },
    }
    return Output(Kind.RFM, user_id, at, key, payload)


# Remembered texts, cleared when full: outputs repeat their times (those of a worker batch
# share their emitted_at, sweeps emit at the same UTC midnights for many users).
_KEPT = 4096
_TIMES: dict[int, str] = {}


def wire_time(ts_ms: int) -> str:
    """`format_ts(ts_ms)`, remembered."""
    text = _TIMES.get(ts_ms)
    if text is None:
        if len(_TIMES) >= _KEPT:
            _TIMES.clear()
        text = _TIMES[ts_ms] = format_ts(ts_ms)
    return text


def to_wire(out: Output, emitted_at_ms: int) -> dict[str, Any]:
    """The JSON document published for an output (see streams/core/schemas/*.schema.json)."""
    return {
        "schema_version": SCHEMA_VERSION,
        "kind": out.kind,
        "idempotency_key": out.idempotency_key,
        "user_id": out.user_id,
        "event_time": wire_time(out.ts),
        "event_time_ms": out.ts,
        "emitted_at": wire_time(emitted_at_ms),
        **out.payload,
    }


_json = msgspec.json.Encoder()


def encode_output(out: Output, emitted_at_ms: int) -> bytes:
    return _json.encode(to_wire(out, emitted_at_ms))
