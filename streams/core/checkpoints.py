"""Checkpoints: the next moment at which a user's decisions can change without new events.

A sweep evaluates a user only at checkpoints, so a checkpoint must come no later than the first
moment a decision could change: a silence reaching a threshold, a period (new user,
reactivation, downgrade grace, a warning's attribution window) ending, the churn probability
reaching the warning level or due for re-scoring,
or a day leaving a window in a way that changes a decision's input. Any moment before that
changes nothing, so the sooner checkpoints are not needed: a regular user has a day leave the
7- and 30-day windows (and, with a long history, the largest window) every midnight, but their
decisions rarely change on it. Each window is therefore looked ahead to the day a decision's
input actually changes, and only as far as the earliest other checkpoint (there the user is
evaluated anyway and the look-ahead starts again). A sweep's cost follows the users whose
decisions can change, not the users known.
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right

from streams.core.churn import WarningReason, drops
from streams.core.eventtime import DAY_MS
from streams.core.facts import Facts, facts_of, scan_at, silence_threshold_ms
from streams.core.lifecycle import Stage
from streams.core.policy import Derived, Policy, derived
from streams.core.rfm import next_change
from streams.core.risk import late_warning_at, warning_at
from streams.core.state import UserState
from streams.core.tiers import eligible_tier
from streams.core.windows import DayBucket, Scan, median_of_sorted

NEVER = 2**62


def next_checkpoint(state: UserState, policy: Policy, f: Facts | None = None) -> int:
    """The next event time after `state.evaluated_at` at which a decision could change.

    `f` are the facts at `state.evaluated_at` when the caller has them.
    """
    scanned = scan_at(state, state.evaluated_at if f is None else f.at, policy)
    if f is None:
        f = facts_of(state, state.evaluated_at, policy, scanned)
    return checkpoint_after(
        state,
        derived(policy),
        policy,
        f,
        scanned,
        stage=state.stage,
        returned_at=state.returned_at,
        pending_since=state.downgrade_pending_since,
        recall_at=state.recall_at,
        drop_episode=state.stage == Stage.AT_RISK
        and state.last_warning_reason == WarningReason.ACTIVITY_DROP,
        rfm_next=next_change(state.rfm_days, f.at, policy) if state.rfm_days else None,
    )


def checkpoint_after(
    state: UserState,
    d: Derived,
    policy: Policy,
    f: Facts,
    scanned: Scan,
    *,
    stage: str,
    returned_at: int | None,
    pending_since: int | None,
    recall_at: int | None,
    drop_episode: bool,
    rfm_next: int | None,
) -> int:
    """`next_checkpoint` of `state` evaluated at `f.at`, with `stage`, `returned_at`,
    `downgrade_pending_since` and `recall_at` as given (the other fields as they are);
    `drop_episode`: the user is in an at-risk episode opened by the activity-drop rule;
    `rfm_next`: when the user's RFM scores next change without a purchase (`rfm.next_change`
    at `f.at`; None: never)."""
    t0 = f.at
    last = state.last_active if state.last_active is not None else state.first_seen
    candidates = (
        last + f.threshold_ms if f.p_churn is None else None,
        last + d.dormant_ms,
        last + d.churned_ms,
        state.first_seen + d.new_user_ms if stage == Stage.NEW else None,
        returned_at + d.reactivated_ms if returned_at is not None else None,
        pending_since + d.grace_ms if pending_since is not None else None,
        # the warning under measurement is judged then
        recall_at + d.attribution_ms if recall_at is not None else None,
        *(_churn_checkpoints(state, f, policy, stage) if f.p_churn is not None else ()),
        # an RFM score changes: recency passes a boundary, purchase days leave the window
        rfm_next,
        # Not a decision: the last day leaves the largest window, and the evaluation there
        # prunes the history of a user gone silent (their state shrinks to its summary).
        (state.buckets[-1].day + d.horizon_days) * DAY_MS if state.buckets else None,
    )
    best = NEVER  # the earliest candidate after t0
    for c in candidates:
        if c is not None and t0 < c < best:
            best = c
    day = window_exit_day(state.buckets, f, scanned, d, policy, drop_episode, before=best)
    return best if day is None else day * DAY_MS


# The silences (whole days after the last active day) at which a silent user's risk score is
# taken again, so it stays current without a sweep every day: the churn probability changes
# most early in a silence, and a user silent for less than a week is not looked at again.
RESCORE_SILENCE_DAYS = (7, 14, 30, 60, 90, 180, 365)
_WARNABLE = (Stage.NEW, Stage.ACTIVE, Stage.REACTIVATED)


def _churn_checkpoints(state: UserState, f: Facts, policy: Policy, stage: str) -> tuple[int, ...]:
    """With a churn model: when this silence's warning is due (if the user is not warned or
    gone already), at the window or at the late look, and the next midnight on the
    re-scoring schedule."""
    model, stats = policy.churn_model, f.stats
    if model is None or stats is None or state.last_active is None:
        return ()
    out: list[int] = []
    if stage in _WARNABLE:
        due = warning_at(model, stats, state.last_active)
        if due is not None and due > f.at:
            out.append(due)
        elif model.late_silence_days is not None and f.warn_from is not None:
            # Only once the window cannot warn (a user it warns is at risk at the late look),
            # and only from the moment's day on: asked at every event of a user who is never
            # silent that long, it cost 5% of the core with a look configured. Before then the
            # start of that day is a checkpoint (usually a re-scoring one already).
            moment_day = f.warn_from - DAY_MS + 1
            if f.at < moment_day:
                out.append(moment_day)
            else:
                late = late_warning_at(model, stats, state.last_active)
                if late is not None:
                    out.append(late)
    silent = f.at // DAY_MS - stats.last_day
    i = bisect_right(RESCORE_SILENCE_DAYS, silent)
    if i < len(RESCORE_SILENCE_DAYS):
        out.append((stats.last_day + RESCORE_SILENCE_DAYS[i]) * DAY_MS)
    return tuple(out)


def window_exit_day(
    buckets: tuple[DayBucket, ...],
    f: Facts,
    scanned: Scan,
    d: Derived,
    policy: Policy,
    drop_episode: bool,
    *,
    before: int = NEVER,
) -> int | None:
    """The first UTC day after today (`f.at`) whose midnight, before event time `before`,
    changes an input of a decision as days leave windows; None if none does. `buckets` are
    pruned to the largest window as of today, as an evaluation leaves them.

    Without events figures only fall as days leave windows: the typical gap (and so the
    silence threshold) as active days leave the largest window, the tier's spend as days
    with spend leave the tier window, and the activity-drop rule's 7- and 30-day active days.
    """
    today = f.at // DAY_MS
    last_day = (before - 1) // DAY_MS  # a later midnight is not before `before`
    if buckets and buckets[-1].day > today:
        # Days dated after today enter the windows as well. An evaluation is at the user's
        # latest event or later, so the engine never has such days: simply look again tomorrow.
        return today + 1 if today + 1 <= last_day else None
    found: int | None = None
    # Each look-ahead is asked only when it can find something before `last_day` (tested here,
    # not in the look-ahead: this runs at every evaluation, most of the time finding nothing).
    if f.active_days_30d >= policy.drop_min_active_days_30d:
        drop = _drop_flip_day(buckets, f, policy, drop_episode)
        if drop is not None and drop <= last_day:
            found, last_day = drop, drop - 1
    first_active = scanned.first_active
    if first_active is not None and first_active + d.horizon_days <= last_day:
        day = _threshold_change_day(buckets, f, d, policy, last_day)
        if day is not None and day <= last_day:
            found, last_day = day, day - 1
    # The first day with spend in the tier window, as of today, leaves it by `last_day`.
    first_spend = scanned.first_spend
    window = policy.tier_window_days
    if first_spend is not None and first_spend < today - window + 1:
        first_spend = today - window + 1
    if first_spend is not None and first_spend + window <= last_day:
        day = _tier_change_day(buckets, f, policy, last_day)
        if day is not None and day <= last_day:
            found, last_day = day, day - 1
    return found


def _threshold_change_day(
    buckets: tuple[DayBucket, ...],
    f: Facts,
    d: Derived,
    policy: Policy,
    last_day: int,
) -> int | None:
    """The first day up to `last_day` on which an active day leaving the largest window
    changes the silence threshold (each takes its gap to the next active day with it).
    Asked only when the first active day leaves the window by `last_day`."""
    today = f.at // DAY_MS
    days = [b.day for b in buckets if b.active and b.day <= today]
    gaps = sorted(b - a for a, b in zip(days, days[1:], strict=False))
    min_gaps = policy.min_gaps_for_typical
    for i, day in enumerate(days[:-1]):
        leaves = day + d.horizon_days
        if leaves > last_day:
            return None
        gaps.pop(bisect_left(gaps, days[i + 1] - day))
        gap = median_of_sorted(gaps) if len(gaps) >= min_gaps else None
        if silence_threshold_ms(gap, policy) != f.threshold_ms:
            return leaves
    # The last active day leaving takes no gap with it: too few gaps are left already.
    return None


def _tier_change_day(
    buckets: tuple[DayBucket, ...],
    f: Facts,
    policy: Policy,
    last_day: int,
) -> int | None:
    """The first day up to `last_day` on which a day with spend leaving the tier window
    changes the tier the spend qualifies for. Asked only when the first day with spend in
    the window leaves it by `last_day`."""
    window = policy.tier_window_days
    first = f.at // DAY_MS - window + 1  # the tier window's first day
    spend = f.spend_window_cents
    now = eligible_tier(spend, policy)
    for b in buckets:
        if b.day < first or not b.spend_cents:
            continue
        leaves = b.day + window
        if leaves > last_day:
            return None
        spend -= b.spend_cents
        if eligible_tier(spend, policy) != now:
            return leaves
    return None


def _drop_flip_day(
    buckets: tuple[DayBucket, ...], f: Facts, policy: Policy, in_episode: bool
) -> int | None:
    """The first day after today (`f.at`) on which the activity-drop rule's answer differs
    from today's if no event arrives; None if it never does.

    The rule reads how many of the last 7 and 30 days were active; without events those
    counts change only as active days leave the windows (`buckets` end today at the latest).
    After a week no active day is left in the 7-day window, and the answer is
    then "dropping" exactly while the 30-day count is at the rule's minimum or above.
    Asked only when the 30-day count is at that minimum: below it, it cannot grow without
    events, and the answer stays "no".
    """
    today = f.at // DAY_MS
    m, n, a7 = policy.drop_min_active_days_30d, f.active_days_30d, f.active_days_7d
    now = drops(a7, n, policy, in_episode=in_episode)
    # `drops` inlined below (this runs at every evaluation of a regular user): dropping iff the
    # 30-day count is at least m and the 7-day rate is below `ratio` times the 30-day rate.
    ratio = policy.drop_recover_ratio if in_episode else policy.drop_ratio
    first30 = today - 29
    days = [b.day for b in buckets if b.active and b.day >= first30]
    # Day by day through the week in which the 7-day window empties.
    left30, left7 = 0, n - a7  # days[:left30] have left the 30-day window, days[:left7] the 7
    for day in range(today + 1, today + 8):
        moved = False
        while left30 < n and days[left30] <= day - 30:
            left30 += 1
            moved = True
        while left7 < n and days[left7] <= day - 7:
            left7 += 1
            moved = True
        if moved:
            in30 = n - left30
            if (in30 >= m and (n - left7) / 7 < ratio * (in30 / 30)) != now:
                return day
    # From here on "dropping" while the 30-day count is >= m, which it stops being when the
    # m-th latest active day leaves the window.
    return days[n - m] + 30 if now else None
