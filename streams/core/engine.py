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

from typing import Any

import msgspec
from msgspec.structs import replace

from streams.core.checkpoints import NEVER, checkpoint_after
from streams.core.churn import WarningReason, risk_score, warning_figures
from streams.core.contract import Event, InvalidEvent, Reason, describe_ts
from streams.core.eventtime import DAY_MS
from streams.core.facts import Facts, facts_of, scan_at
from streams.core.holdout import assign_group
from streams.core.lifecycle import Stage, decide_stage
from streams.core.outputs import (
    Output,
    churn_warning,
    lifecycle_changed,
    recall_reactivated,
    rfm_segment_changed,
    tier_changed,
)
from streams.core.policy import Derived, Policy, derived
from streams.core.recall import Tally, count_judged, count_warning
from streams.core.retention import marked
from streams.core.rfm import NONE as NO_SEGMENT
from streams.core.rfm import Assessment, add_purchase, assess, next_change
from streams.core.rfm import prune as prune_purchases
from streams.core.state import UserState, fingerprint, recent_fingerprints, seen_before
from streams.core.tiers import TierDecision, decide_tier
from streams.core.windows import Scan, add_to_buckets, has_any, is_active_day, prune


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
            f"event time {describe_ts(ts)} is before {describe_ts(cutoff)}, the user's "
            "event-time clock minus the allowed lateness: an event this late is not applied",
            user_id,
        )


def _evaluate(
    state: UserState,
    at: int,
    policy: Policy,
    d: Derived,
    version: int | None = None,
    bought: bool = False,
) -> tuple[UserState, list[Output]]:
    """Decide stage, warning and tier as of `at` (>= state.evaluated_at).

    `d` is `derived(policy)`, which the caller has. `version`, when given, is set in the same
    step (one struct copy fewer per event). `bought`: a purchase was added to the state since
    its last evaluation.
    """
    state = _pruned(state, at, policy, d)
    scanned = scan_at(state, at, policy)
    f = facts_of(state, at, policy, scanned)
    prev = state.stage or None
    stage, reason = decide_stage(
        prev,
        f,
        state.returned_at,
        policy,
        episode_start=state.episode_start,
        episode_reason=state.last_warning_reason,
        d=d,
    )
    risk = risk_score(f, policy)
    outs: list[Output] = []
    # Field values for `replace`, typed Any: read back below without a `cast` call (a function
    # call at every evaluation).
    changes: dict[str, Any] = {}
    # A warning whose attribution window ended is judged before anything else happens at `at`.
    if state.recall_at is not None and at >= state.recall_at + d.attribution_ms:
        changes.update(_judge_recall(state))
    if stage != prev:
        _change_stage(state, at, prev, stage, reason, f, risk, policy, outs, changes)
    tier = decide_tier(
        state.tier, state.downgrade_pending_since, f.spend_window_cents, at, policy, d
    )
    if tier.direction is not None:
        _change_tier(state, at, tier, tier.direction, f, outs, changes)
    rfm, rfm_next = _rfm(state, at, policy, d, bought)
    if rfm is not None:
        _change_rfm(state, at, rfm, rfm_next, policy, d, outs, changes)
    next_check = _next_check(state, d, policy, f, scanned, stage, tier, rfm_next, changes)
    changes.update(
        downgrade_pending_since=tier.pending_since,
        risk=risk,
        evaluated_at=state.evaluated_at if state.evaluated_at > at else at,
        next_check=next_check,
    )
    if version is not None:
        changes["version"] = version
    return replace(state, **changes), outs


def _pruned(state: UserState, at: int, policy: Policy, d: Derived) -> UserState:
    """`state` without the activity buckets and purchase days that left their largest window
    by `at`: pruned first, so the facts, the decisions and the next checkpoint all see the
    same history."""
    # The oldest bucket or purchase day tells whether any left (usually none): tested here, the
    # prune functions are called only when there is something to drop.
    today = at // DAY_MS
    buckets = state.buckets
    if buckets and buckets[0].day <= today - d.horizon_days:
        state = replace(state, buckets=prune(buckets, today, d.horizon_days))
    purchases = state.rfm_days
    if purchases and purchases[0].day <= today - policy.rfm.window_days:
        state = replace(state, rfm_days=prune_purchases(purchases, today, policy.rfm.window_days))
    return state


def _change_tier(
    state: UserState,
    at: int,
    tier: TierDecision,
    direction: str,
    f: Facts,
    outs: list[Output],
    changes: dict[str, Any],
) -> None:
    """The output and state changes of a tier decision with a `direction` (initial, upgrade,
    downgrade; appends to `outs` and `changes`)."""
    outs.append(
        tier_changed(
            state.user_id,
            at,
            state.tier or None,
            tier.tier,
            direction,
            tier.reason,
            f.spend_window_cents / 100,
            tier.threshold,
        )
    )
    changes.update(tier=tier.tier, tier_since=at)


def _next_check(
    state: UserState,
    d: Derived,
    policy: Policy,
    f: Facts,
    scanned: Scan,
    stage: str,
    tier: TierDecision,
    rfm_next: int | None,
    changes: dict[str, Any],
) -> int:
    """The user's next checkpoint after this evaluation, from the fields it reads as `changes`
    will leave them (most evaluations change none of them)."""
    warning_reason, returned_at, recall_at = (
        state.last_warning_reason,
        state.returned_at,
        state.recall_at,
    )
    if changes:
        warning_reason = changes.get("last_warning_reason", warning_reason)
        returned_at = changes.get("returned_at", returned_at)
        recall_at = changes.get("recall_at", recall_at)
    # The evaluation's `at` is the new evaluated_at, so f (taken at `at` on the same buckets)
    # holds for it. The stage is `stage` whether it changed or not.
    return checkpoint_after(
        state,
        d,
        policy,
        f,
        scanned,
        stage=stage,
        returned_at=returned_at,
        pending_since=tier.pending_since,
        recall_at=recall_at,
        drop_episode=stage == Stage.AT_RISK and warning_reason == WarningReason.ACTIVITY_DROP,
        rfm_next=rfm_next,
    )


def _rfm(
    state: UserState, at: int, policy: Policy, d: Derived, bought: bool
) -> tuple[Assessment | None, int | None]:
    """The RFM assessment at `at` (None: the state's scores still hold, not assessed again) and
    when the scores next change without a purchase (None: never)."""
    if not state.rfm_days:  # most users have not bought within the window
        return NO_SEGMENT, None
    today = at // DAY_MS
    # Scores change only with a purchase or at their next change, so until then they need no
    # assessment (most evaluations: an event that is not a purchase, a checkpoint of another
    # rule). Remembered under the policy that found them: a new RFM policy assesses again.
    if not bought and state.rfm_policy == d.rfm_tag and today < state.rfm_until:
        return None, state.rfm_until * DAY_MS
    rfm = assess(state.rfm_days, today, policy)
    return rfm, next_change(state.rfm_days, at, policy, rfm)


def _change_rfm(
    state: UserState,
    at: int,
    rfm: Assessment,
    rfm_next: int | None,
    policy: Policy,
    d: Derived,
    outs: list[Output],
    changes: dict[str, Any],
) -> None:
    """The output and state changes of an RFM assessment (appends to `outs` and `changes`)."""
    if rfm.segment != state.rfm_segment:
        outs.append(
            rfm_segment_changed(
                state.user_id,
                at,
                state.rfm_segment or None,
                rfm.segment or None,
                rfm.scores,
                rfm.recency_days,
                rfm.frequency,
                rfm.monetary_cents,
                policy.rfm.window_days,
            )
        )
    if rfm.scores != state.rfm_scores or rfm.segment != state.rfm_segment:
        changes.update(rfm_scores=rfm.scores, rfm_segment=rfm.segment)
    until = 0 if rfm_next is None else rfm_next // DAY_MS
    if until != state.rfm_until or d.rfm_tag != state.rfm_policy:
        changes.update(rfm_until=until, rfm_policy=d.rfm_tag)


def _change_stage(
    state: UserState,
    at: int,
    prev: str | None,
    stage: str,
    reason: str,
    f: Facts,
    risk: float,
    policy: Policy,
    outs: list[Output],
    changes: dict[str, Any],
) -> None:
    """The outputs and state changes of moving from `prev` to `stage` at `at`: the lifecycle
    event, a recall return, a churn warning with its recall measurement, the episode and the
    return time. Appends to `outs` and `changes`."""
    # The same figures go with a warning: taken once, each output gets its own copy.
    figures = warning_figures(f)
    outs.append(lifecycle_changed(state.user_id, at, prev, stage, reason, figures))
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
                state.user_id, at, reason, risk, prev or "", state.tier, dict(figures), group
            )
        )
        changes.update(episode_start=at, last_warning_at=at, last_warning_reason=reason)
        changes.update(_open_recall(replace(state, **changes), at, group, reason))
    elif prev == Stage.AT_RISK:
        changes.update(episode_start=None)
    if stage == Stage.REACTIVATED and prev in (Stage.DORMANT, Stage.CHURNED):
        changes.update(returned_at=at)


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


def sweep(state: UserState, now: int, policy: Policy) -> Result:
    """Let event time pass up to `now`: evaluate every checkpoint that fell due, in order."""
    if state.next_check > now:
        return Result(state, (), Status.IDLE)
    outs: list[Output] = []
    # A sweep is one new version however many checkpoints it evaluates: each evaluation sets
    # it, and only the last state leaves the sweep.
    version = state.version + 1
    d = derived(policy)
    while state.next_check <= now:
        state, o = _evaluate(state, state.next_check, policy, d, version)
        outs.extend(o)
    return Result(state, tuple(outs), Status.SWEPT)


def _purchase_day(state: UserState, event: Event, d: Derived) -> dict[str, object]:
    """Keep the BG/NBD statistics: a purchase (an event of a spend type) on a day without one
    yet is a new purchase day. The fields to change (none when the day had one).

    Late purchases are within the allowed lateness, so their day is still in the buckets and
    the check is exact whatever the arrival order.
    """
    day = event.ts // DAY_MS
    if has_any(state.buckets, day, d.spend_indexes):
        return {}
    first, last = state.first_purchase_day, state.last_purchase_day
    return {
        "purchase_days": state.purchase_days + 1,
        "first_purchase_day": day if first is None else min(first, day),
        "last_purchase_day": day if last is None else max(last, day),
    }


def _active_day(state: UserState, day: int) -> dict[str, object]:
    """Keep the churn model's statistics: activity on a day without any yet is a new active day.
    The fields to change (none when the day had activity).

    Late events are within the allowed lateness, so their day is still in the buckets and the
    check is exact whatever the arrival order. A state from before these statistics existed
    (active days 0 but activity in its buckets) is seeded from the buckets first: its active
    days before the largest window are not known, so the model sees a shorter history.
    """
    n, first, last = state.active_days, state.first_active_day, state.last_active_day
    if n == 0 and state.last_active is not None:
        days = [b.day for b in state.buckets if b.active]
        if days:
            n, first, last = len(days), days[0], days[-1]
    if is_active_day(state.buckets, day):
        if n == state.active_days:
            return {}
        return {"active_days": n, "first_active_day": first, "last_active_day": last}
    return {
        "active_days": n + 1,
        "first_active_day": day if first is None else min(first, day),
        "last_active_day": day if last is None else max(last, day),
    }


def _advance(state: UserState, partition: int, offset: int) -> int:
    """The last applied offset after applying `offset`: offsets compare only within a partition."""
    if partition != state.partition:
        return offset
    return state.last_offset if state.last_offset > offset else offset


def _fresh(event: Event) -> UserState:
    return UserState(
        user_id=event.user_id,
        first_seen=event.ts,
        last_seen=event.ts,
        last_active=None,
        evaluated_at=event.ts,
        next_check=NEVER,
    )


def _folded(
    state: UserState,
    event: Event,
    policy: Policy,
    d: Derived,
    ids: bytes,
    partition: int,
    offset: int,
) -> UserState:
    """`state` with `event` counted: windows, totals, day statistics, purchases, cohorts, the
    event's fingerprint (`ids`, trimmed to the dedup capacity) and its source offset; not yet
    evaluated."""
    ts, etype = event.ts, event.type
    active = etype not in d.passive_types
    bought = etype in d.spend_types
    spend = event.amount_cents if bought else 0
    if len(ids) > 8 * policy.dedup_capacity:
        ids = ids[-8 * policy.dedup_capacity :]
    last_active = state.last_active
    if active:
        # Conditional expressions, not min/max, here and below: a builtin call costs more
        # on this path, which runs at every event.
        last_active = ts if last_active is None or ts > last_active else last_active
    # The day statistics go into the one copy of the state below (no copy of their own).
    days: dict[str, object] = {}
    purchases = state.rfm_days
    if bought:
        days = _purchase_day(state, event, d)
        purchases = add_purchase(purchases, ts // DAY_MS, spend)
    cohorts: dict[str, int] = {}
    if active:
        cohorts = marked(state, state.last_active is not None, ts // DAY_MS)
        days.update(_active_day(state, ts // DAY_MS))
    return replace(
        state,
        **cohorts,
        rfm_days=purchases,
        buckets=add_to_buckets(
            state.buckets,
            ts // DAY_MS,
            d.type_index.get(etype, d.n_types - 1),
            d.n_types,
            spend,
            active,
        ),
        recent_ids=ids,
        first_seen=ts if ts < state.first_seen else state.first_seen,
        last_seen=ts if ts > state.last_seen else state.last_seen,
        last_active=last_active,
        total_events=state.total_events + 1,
        total_spend_cents=state.total_spend_cents + spend,
        partition=partition,
        last_offset=_advance(state, partition, offset),
        **days,
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
    d = derived(policy)
    if state is None:
        state = _fresh(event)
        seen = b""
    else:
        seen = recent_fingerprints(state.recent_ids)
        if seen_before(seen, fp):
            moved = replace(
                state, partition=partition, last_offset=_advance(state, partition, offset)
            )
            return Result(moved, (), Status.DUPLICATE)
        cutoff = state.evaluated_at - d.lateness_ms
        if event.ts < cutoff:
            raise TooLate(event.ts, cutoff, event.user_id)
        # Decisions that fell due before this event happened are made first.
        if state.next_check <= event.ts:
            swept = sweep(state, event.ts, policy)
            state, outs = swept.state, list(swept.outputs)

    state = _folded(state, event, policy, d, seen + fp, partition, offset)
    ts, bought = event.ts, event.type in d.spend_types
    state, o = _evaluate(
        state,
        ts if ts > state.evaluated_at else state.evaluated_at,
        policy,
        d,
        state.version + 1,
        bought,
    )
    outs.extend(o)
    return Result(state, tuple(outs), Status.APPLIED)
