"""A user's current figures as people and services read them: every rolling window, seen times,
typical gap, stage, tier, risk and RFM segment. Pure: `at` is the moment the windows end."""

from __future__ import annotations

from typing import Any

from streams.core.eventtime import day_of, format_ts
from streams.core.policy import Policy
from streams.core.state import UserState
from streams.core.windows import typical_gap_days
from streams.core.windows import windows as rolling_windows


def snapshot(state: UserState, at: int, policy: Policy) -> dict[str, Any]:
    """The user's state as of event time `at` (windows end on at's UTC day)."""
    today = day_of(at)
    names = (*policy.event_types, "other")
    windows = {}
    for w in rolling_windows(state.buckets, today, policy.windows_days, len(names)):
        windows[f"{w.days}d"] = {
            "events": w.events,
            "by_type": {n: c for n, c in zip(names, w.counts, strict=True) if c},
            "spend": w.spend_cents / 100,
            "active_days": w.active_days,
        }
    return {
        "user_id": state.user_id,
        "stage": state.stage,
        "stage_since": format_ts(state.stage_since),
        "tier": state.tier,
        "tier_since": format_ts(state.tier_since),
        "risk_score": state.risk,
        "first_seen": format_ts(state.first_seen),
        "last_seen": format_ts(state.last_seen),
        "last_active": format_ts(state.last_active) if state.last_active is not None else None,
        "typical_gap_days": typical_gap_days(state.buckets, today, policy.min_gaps_for_typical),
        "last_warning_at": (
            format_ts(state.last_warning_at) if state.last_warning_at is not None else None
        ),
        "last_warning_reason": state.last_warning_reason,
        "windows": windows,
        "lifetime": {"events": state.total_events, "spend": state.total_spend_cents / 100},
        # As of the user's clock (`evaluated_at`): RFM scores change only at checkpoints.
        "rfm": (
            {
                "segment": state.rfm_segment,
                "recency": int(state.rfm_scores[0]),
                "frequency": int(state.rfm_scores[1]),
                "monetary": int(state.rfm_scores[2]),
            }
            if state.rfm_segment
            else None
        ),
        "as_of": format_ts(at),
        "version": state.version,
    }


def user_document(state: UserState, policy: Policy) -> dict[str, Any]:
    """The user's document as the state API serves it: the snapshot as of the user's own clock
    (`evaluated_at`), plus `updated_at`, the event time of the last change.

    Event time, not wall time: a document read from a view rebuilt from Kafka, or from the
    same state read later, is the same. The worker stores the state; the API calls this on
    read with the policy the worker runs with (windows and event types come from it).
    """
    doc = snapshot(state, state.evaluated_at, policy)
    doc["updated_at"] = doc["as_of"]
    return doc
