"""The figures the lifecycle, churn and tier rules look at, derived from a state at a moment."""

from __future__ import annotations

import msgspec

from streams.core.eventtime import DAY_MS
from streams.core.policy import Policy, days_ms, derived
from streams.core.risk import Stats, score, stats_of, warn_from
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
    # With a churn model and an active day: P(no activity within the model's horizon), the
    # earliest moment its warning may fire in this silence, and P(alive) where BG/NBD gave it.
    # None without a model, or for a user never active: the silence rule decides then.
    p_churn: float | None = None
    warn_from: int | None = None
    p_alive: float | None = None
    # The active-day statistics the score came from, for the checkpoint that schedules the
    # warning (None whenever p_churn is).
    stats: Stats | None = None

    @property
    def silence_days(self) -> float:
        return self.silence_ms / DAY_MS


def silence_threshold_ms(gap_days: float | None, policy: Policy) -> int:
    """How long a silence is normal for a user with this typical gap (floor and ceiling applied)."""
    if gap_days is None:
        return derived(policy).default_threshold_ms
    days = gap_days * policy.at_risk_gap_multiplier
    # min(max(days, floor), ceiling), spelled out: this runs at every evaluation.
    floor, ceiling = policy.at_risk_floor_days, policy.at_risk_ceiling_days
    days = floor if floor > days else days
    return days_ms(ceiling if ceiling < days else days)


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
    model = policy.churn_model
    stats = stats_of(state) if model is not None else None
    p_churn: float | None = None
    p_alive: float | None = None
    warned_from: int | None = None
    if model is not None and stats is not None and state.last_active is not None:
        p_churn, p_alive = score(model, stats, at // DAY_MS)
        warned_from = warn_from(model, state.last_active)
    else:
        stats = None
    return Facts(
        at=at,
        age_ms=at - state.first_seen,
        silence_ms=at - last if at > last else 0,
        typical_gap_days=gap,
        threshold_ms=silence_threshold_ms(gap, policy),
        active_days_7d=scanned.active_days_7d,
        active_days_30d=scanned.active_days_30d,
        spend_window_cents=scanned.spend_cents,
        last_active=state.last_active,
        p_churn=p_churn,
        warn_from=warned_from,
        p_alive=p_alive,
        stats=stats,
    )
