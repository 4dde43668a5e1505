"""The figures the lifecycle, churn and tier rules look at, derived from a state at a moment."""

from __future__ import annotations

import msgspec

from streams.core.bgnbd import day_p_alive_falls, p_alive, state_summary
from streams.core.eventtime import DAY_MS
from streams.core.policy import Policy, days_ms, derived
from streams.core.state import UserState
from streams.core.windows import Scan, scan


# gc=False: frozen, holding only numbers, strings and tuples of those or of other such structs,
# so never part of a reference cycle; untracked, its many short-lived copies do not set off
# garbage collections.
class Facts(msgspec.Struct, frozen=True, gc=False):
    at: int
    age_ms: int
    silence_ms: int
    typical_gap_days: float | None
    threshold_ms: int  # silence beyond this is not normal for this user
    active_days_7d: int
    active_days_30d: int
    spend_window_cents: int
    last_active: int | None = None
    # BG/NBD P(alive) from the purchase statistics; None without a churn model or purchases.
    p_alive: float | None = None

    @property
    def silence_days(self) -> float:
        return self.silence_ms / DAY_MS


def silence_threshold_ms(gap_days: float | None, policy: Policy) -> int:
    """How long a silence is normal for a user with this typical gap (floor and ceiling applied)."""
    if gap_days is None:
        return derived(policy).default_threshold_ms
    days = gap_days * policy.at_risk_gap_multiplier
    return days_ms(min(max(days, policy.at_risk_floor_days), policy.at_risk_ceiling_days))


def churn_p_alive(state: UserState, at: int, policy: Policy) -> float | None:
    """The user's P(alive) at `at` under the policy's churn model (None: no model or purchase)."""
    if policy.churn_model is None:
        return None
    summary = state_summary(state, at)
    if summary is None:
        return None
    return p_alive(policy.churn_model, *summary)


def p_alive_checkpoint(state: UserState, at: int, policy: Policy, step: float = 0.01) -> int | None:
    """The UTC midnight (epoch ms) after `at` by which a silent user's P(alive) has fallen by
    `step`: when to re-score them. None without a churn model, a repeat purchase, or room to
    fall."""
    summary = state_summary(state, at) if policy.churn_model is not None else None
    if policy.churn_model is None or summary is None or state.first_purchase_day is None:
        return None
    day = day_p_alive_falls(policy.churn_model, state.first_purchase_day, summary, step)
    return None if day is None else day * DAY_MS


def facts_at(state: UserState, at: int, policy: Policy) -> Facts:
    """Facts about `state` as of event time `at`."""
    return facts_of(state, at, policy, scan_at(state, at, policy))


def scan_at(state: UserState, at: int, policy: Policy) -> Scan:
    """The pass over the user's buckets that the facts as of `at` come from."""
    return scan(state.buckets, at // DAY_MS, policy.tier_window_days, policy.min_gaps_for_typical)


def facts_of(state: UserState, at: int, policy: Policy, scanned: Scan) -> Facts:
    """`facts_at(state, at, policy)`, from `scan_at(state, at, policy)` already taken."""
    gap = scanned.typical_gap_days
    last = state.last_active if state.last_active is not None else state.first_seen
    return Facts(
        at=at,
        age_ms=at - state.first_seen,
        silence_ms=max(0, at - last),
        typical_gap_days=gap,
        threshold_ms=silence_threshold_ms(gap, policy),
        active_days_7d=scanned.active_days_7d,
        active_days_30d=scanned.active_days_30d,
        spend_window_cents=scanned.spend_cents,
        last_active=state.last_active,
        p_alive=churn_p_alive(state, at, policy) if policy.churn_model is not None else None,
    )
