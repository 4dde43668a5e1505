"""The pure core: apply one event, or let event time pass, and get the new state and outputs.

    apply_event(state, event, policy, partition, offset) -> Result
    sweep(state, now, policy) -> Result

No I/O, no clock: the live worker, the tests and an offline replay all call these two.

Decisions are evaluated at *checkpoints*: the moments at which some rule's answer can change
(a silence threshold, the end of the new-user period, a grace period, a UTC day boundary when
windows slide). A sweep evaluates every checkpoint up to `now` in order, so the outputs, their
event times and their idempotency keys do not depend on how often sweeps run.
"""

from __future__ import annotations

import msgspec
from msgspec.structs import replace

from streams.churn import risk_score, warning_figures
from streams.contract import Event, InvalidEvent, Reason
from streams.eventtime import DAY_MS, day_of
from streams.facts import Facts, facts_at, p_alive_checkpoint
from streams.holdout import assign_group
from streams.lifecycle import Stage, decide_stage
from streams.outputs import (
    Output,
    churn_warning,
    lifecycle_changed,
    recall_reactivated,
    tier_changed,
)
from streams.policy import Policy, days_ms
from streams.recall import Tally, count_judged, count_warning
from streams.state import UserState, fingerprint
from streams.tiers import decide_tier
from streams.windows import add_to_buckets, has_any, prune

NEVER = 2**62


class Status:
    APPLIED = "applied"
    DUPLICATE = "duplicate"  # same event_id seen before for this user
    REDELIVERED = "redelivered"  # same source offset applied before (at-least-once replay)
    SWEPT = "swept"
    IDLE = "idle"  # nothing was due


class Result(msgspec.Struct, frozen=True):
    state: UserState
    outputs: tuple[Output, ...]
    status: str

    @property
    def changed(self) -> bool:
        return self.status in (Status.APPLIED, Status.SWEPT, Status.DUPLICATE)


class TooLate(InvalidEvent):
    def __init__(self, ts: int, cutoff: int, user_id: str) -> None:
        super().__init__(
            Reason.TOO_LATE,
            f"event time {ts} is older than the user's clock minus the allowed lateness ({cutoff})",
            user_id,
        )


def _figures(f: Facts) -> dict[str, object]:
    return warning_figures(f)


def _evaluate(state: UserState, at: int, policy: Policy) -> tuple[UserState, list[Output]]:
    """Decide stage, warning and tier as of `at` (>= state.evaluated_at)."""
    # Buckets that left the largest window go first, so the facts, the decisions and the next
    # checkpoint all see the same history.
    state = replace(state, buckets=prune(state.buckets, day_of(at), policy.horizon_days))
    f = facts_at(state, at, policy)
    prev = state.stage or None
    stage, reason = decide_stage(
        prev,
        f,
        state.returned_at,
        policy,
        episode_start=state.episode_start,
        episode_reason=state.last_warning_reason,
    )
    risk = risk_score(f, policy)
    outs: list[Output] = []
    changes: dict[str, object] = {}
    # A warning whose attribution window ended is judged before anything else happens at `at`.
    if state.recall_at is not None and at >= state.recall_at + days_ms(
        policy.attribution_window_days
    ):
        changes.update(_judge_recall(state))
    if stage != prev:
        outs.append(lifecycle_changed(state.user_id, at, prev, stage, reason, _figures(f)))
        changes.update(stage=stage, stage_since=at, stage_reason=reason)
        if (
            state.recall_at is not None
            and "recall_at" not in changes
            and state.recall_returned_at is None
            and prev in _AWAY
            and stage in _BACK
        ):
            outs.append(
                recall_reactivated(
                    state.user_id,
                    at,
                    state.recall_at,
                    state.recall_group,
                    state.recall_tier,
                    state.recall_reason,
                    prev or "",
                    stage,
                    policy.attribution_window_days,
                )
            )
            changes.update(recall_returned_at=at)
        if stage == Stage.AT_RISK:
            group = assign_group(state.user_id, policy)
            outs.append(
                churn_warning(
                    state.user_id, at, reason, risk, prev or "", state.tier, _figures(f), group
                )
            )
            changes.update(episode_start=at, last_warning_at=at, last_warning_reason=reason)
            changes.update(_open_recall(replace(state, **changes), at, group, reason))
        elif prev == Stage.AT_RISK:
            changes.update(episode_start=None)
        if stage == Stage.REACTIVATED and prev in (Stage.DORMANT, Stage.CHURNED):
            changes.update(returned_at=at)
    tier = decide_tier(state.tier, state.downgrade_pending_since, f.spend_window_cents, at, policy)
    if tier.direction is not None:
        outs.append(
            tier_changed(
                state.user_id,
                at,
                state.tier or None,
                tier.tier,
                tier.direction,
                tier.reason,
                f.spend_window_cents / 100,
                tier.threshold,
            )
        )
        changes.update(tier=tier.tier, tier_since=at)
    changes.update(
        downgrade_pending_since=tier.pending_since,
        risk=risk,
        evaluated_at=max(at, state.evaluated_at),
    )
    new = replace(state, **changes)
    # `at` is the new evaluated_at, so f (taken at `at` on the same buckets) holds for it.
    return replace(new, next_check=next_checkpoint(new, policy, f)), outs


# Stages a warned user is away in, and the ones that mean they came back.
_AWAY = (Stage.AT_RISK, Stage.DORMANT, Stage.CHURNED)
_BACK = (Stage.ACTIVE, Stage.REACTIVATED)


_RECALL_CLOSED: dict[str, object] = {
    "recall_at": None,
    "recall_group": "",
    "recall_tier": "",
    "recall_reason": "",
    "recall_returned_at": None,
}


def _judged(state: UserState) -> Tally:
    """The tally with the warning under measurement judged: reactivated if the user came
    back within its window."""
    if state.recall_at is None:
        return state.recall_tally
    return count_judged(
        state.recall_tally,
        state.recall_group,
        state.recall_tier,
        state.recall_reason,
        reactivated=state.recall_returned_at is not None,
    )


def _judge_recall(state: UserState) -> dict[str, object]:
    return {**_RECALL_CLOSED, "recall_tally": _judged(state)}


def _open_recall(state: UserState, at: int, group: str, reason: str) -> dict[str, object]:
    """Start measuring the warning emitted at `at`.

    A warning still under measurement is judged first: a new episode needs the user to have
    come back since the last warning, so its outcome is already known.
    """
    return {
        "recall_tally": count_warning(_judged(state), group, state.tier, reason),
        "recall_at": at,
        "recall_group": group,
        "recall_tier": state.tier,
        "recall_reason": reason,
        "recall_returned_at": None,
    }


def next_checkpoint(state: UserState, policy: Policy, f: Facts | None = None) -> int:
    """The next event time after `state.evaluated_at` at which a decision could change.

    `f` are the facts at `state.evaluated_at` when the caller has them. Without new events a
    decision can change only when a silence reaches a threshold, a period (new user,
    reactivation, downgrade grace) ends, or a day leaves a window that a rule reads: see
    `_next_window_exit`. Users with nothing pending are not due, so a sweep's cost follows the
    users due, not the users known.
    """
    t0 = state.evaluated_at
    last = state.last_active if state.last_active is not None else state.first_seen
    if f is None:
        f = facts_at(state, t0, policy)
    cands = [
        last + f.threshold_ms,
        last + days_ms(policy.dormant_after_days),
        last + days_ms(policy.churned_after_days),
    ]
    if state.stage == Stage.NEW:
        cands.append(state.first_seen + days_ms(policy.new_user_days))
    if state.returned_at is not None:
        cands.append(state.returned_at + days_ms(policy.reactivated_days))
    if state.downgrade_pending_since is not None:
        cands.append(state.downgrade_pending_since + days_ms(policy.downgrade_grace_days))
    if state.recall_at is not None:  # the warning under measurement is judged then
        cands.append(state.recall_at + days_ms(policy.attribution_window_days))
    exit_day = _next_window_exit(state, f, policy)
    if exit_day is not None:
        cands.append(exit_day * DAY_MS)
    # With a churn model, silence lowers P(alive): re-score when it has fallen a step.
    rescore = p_alive_checkpoint(state, t0, policy)
    if rescore is not None:
        cands.append(rescore)
    later = [c for c in cands if c > t0]
    return min(later) if later else NEVER


def _next_window_exit(state: UserState, f: Facts, policy: Policy) -> int | None:
    """The first UTC day after today whose midnight changes a figure a decision reads.

    Without events, figures only fall as days leave windows: the typical gap changes when an
    active day leaves the largest window (it is pruned); the tier's spend when a day with
    spend leaves the tier window; the activity-drop rule's 7- and 30-day rates when an active
    day leaves them, but only while the user has enough 30-day activity for the rule to apply
    (that count cannot grow without events).
    """
    today = day_of(f.at)
    best: int | None = None

    def consider(day: int) -> None:
        nonlocal best
        if day > today and (best is None or day < best):
            best = day

    drop_applies = f.active_days_30d >= policy.drop_min_active_days_30d
    gap_seen = spend_seen = False
    for b in state.buckets:  # sorted by day: the first bucket of each kind exits first
        if b.active and not gap_seen:
            consider(b.day + policy.horizon_days)
            gap_seen = True
        if b.spend_cents and not spend_seen:
            consider(b.day + policy.tier_window_days)
            spend_seen = True
        if drop_applies and b.active:
            for days in (7, 30):
                if b.day + days > today:
                    consider(b.day + days)
    return best


def sweep(state: UserState, now: int, policy: Policy) -> Result:
    """Let event time pass up to `now`: evaluate every checkpoint that fell due, in order."""
    outs: list[Output] = []
    swept = False
    while state.next_check <= now:
        state, o = _evaluate(state, state.next_check, policy)
        outs.extend(o)
        swept = True
    if not swept:
        return Result(state, (), Status.IDLE)
    return Result(replace(state, version=state.version + 1), tuple(outs), Status.SWEPT)


def _count_purchase_day(state: UserState, event: Event, policy: Policy) -> UserState:
    """Keep the BG/NBD statistics: a purchase on a day without one yet is a new purchase day.

    Late purchases are within the allowed lateness, so their day is still in the buckets and
    the check is exact whatever the arrival order.
    """
    if event.type not in policy.spend_types:
        return state
    day = day_of(event.ts)
    spend_indexes = tuple(_type_index(t, policy) for t in policy.spend_types)
    if has_any(state.buckets, day, spend_indexes):
        return state
    first, last = state.first_purchase_day, state.last_purchase_day
    return replace(
        state,
        purchase_days=state.purchase_days + 1,
        first_purchase_day=day if first is None else min(first, day),
        last_purchase_day=day if last is None else max(last, day),
    )


def _advance(state: UserState, partition: int, offset: int) -> int:
    """The last applied offset after applying `offset`: offsets compare only within a partition."""
    return max(offset, state.last_offset) if partition == state.partition else offset


def _type_index(etype: str, policy: Policy) -> int:
    try:
        return policy.event_types.index(etype)
    except ValueError:
        return len(policy.event_types)


def _fresh(event: Event) -> UserState:
    return UserState(
        user_id=event.user_id,
        first_seen=event.ts,
        last_seen=event.ts,
        last_active=None,
        evaluated_at=event.ts,
        next_check=NEVER,
    )


def apply_event(
    state: UserState | None,
    event: Event,
    policy: Policy,
    partition: int = -1,
    offset: int = -1,
) -> Result:
    """Fold one validated event into the user's state.

    `partition`/`offset` locate the record in the source topic; a record at or before the last
    applied offset of the same partition is an at-least-once redelivery and changes nothing.
    Raises TooLate when the event is older than the user's clock minus the allowed lateness.
    """
    outs: list[Output] = []
    if state is not None and partition == state.partition and 0 <= offset <= state.last_offset:
        return Result(state, (), Status.REDELIVERED)
    fp = fingerprint(event.event_id)
    if state is None:
        state = _fresh(event)
    else:
        if fp in state.recent_ids:
            moved = replace(
                state, partition=partition, last_offset=_advance(state, partition, offset)
            )
            return Result(moved, (), Status.DUPLICATE)
        cutoff = state.evaluated_at - policy.lateness_ms
        if event.ts < cutoff:
            raise TooLate(event.ts, cutoff, event.user_id)
        # Decisions that fell due before this event happened are made first.
        swept = sweep(state, event.ts, policy)
        state, outs = swept.state, list(swept.outputs)

    active = event.type not in policy.passive_types
    spend = event.amount_cents if event.type in policy.spend_types else 0
    n_types = len(policy.event_types) + 1
    ids = (*state.recent_ids, fp)[-policy.dedup_capacity :]
    last_active = state.last_active
    if active:
        last_active = event.ts if last_active is None else max(last_active, event.ts)
    state = _count_purchase_day(state, event, policy)
    state = replace(
        state,
        buckets=add_to_buckets(
            state.buckets,
            day_of(event.ts),
            _type_index(event.type, policy),
            n_types,
            spend,
            active,
        ),
        recent_ids=ids,
        first_seen=min(state.first_seen, event.ts),
        last_seen=max(state.last_seen, event.ts),
        last_active=last_active,
        total_events=state.total_events + 1,
        total_spend_cents=state.total_spend_cents + spend,
        partition=partition,
        last_offset=_advance(state, partition, offset),
    )
    state, o = _evaluate(state, max(event.ts, state.evaluated_at), policy)
    outs.extend(o)
    return Result(replace(state, version=state.version + 1), tuple(outs), Status.APPLIED)
