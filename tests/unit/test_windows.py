"""Day buckets and the rolling figures derived from them."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from streams.core.eventtime import DAY_MS
from streams.core.facts import facts_at, silence_threshold_ms
from streams.core.policy import days_ms
from streams.core.state import UserState
from streams.core.windows import (
    DayBucket,
    active_days_in,
    add_to_buckets,
    decision_figures,
    prune,
    spend_in,
    typical_gap_days,
    window,
    windows,
)

from .pulse_testkit import BASE, POLICY, PROPERTY, at

N = 3  # two named types and "other"
D0 = BASE // DAY_MS  # the UTC day number of BASE


def b(day: int, *counts: int, spend: int = 0, active: bool = True) -> DayBucket:
    return DayBucket(day, tuple(counts) if counts else (1, 0, 0), spend, active)


# --------------------------------------------------------------------------- add_to_buckets


def test_first_event_of_a_day_makes_a_bucket() -> None:
    assert add_to_buckets((), 10, 1, N, 250, True) == (DayBucket(10, (0, 1, 0), 250, True),)


def test_events_on_the_same_day_accumulate() -> None:
    bs = add_to_buckets((), 10, 0, N, 100, False)
    bs = add_to_buckets(bs, 10, 0, N, 0, False)
    bs = add_to_buckets(bs, 10, 2, N, 50, True)
    assert bs == (DayBucket(10, (2, 0, 1), 150, True),)


def test_activity_of_a_day_is_sticky() -> None:
    bs = add_to_buckets((), 10, 0, N, 0, True)
    bs = add_to_buckets(bs, 10, 0, N, 0, False)
    assert bs[0].active is True


def test_buckets_stay_sorted_when_a_late_day_arrives() -> None:
    bs = add_to_buckets((), 12, 0, N, 0, True)
    bs = add_to_buckets(bs, 10, 0, N, 0, True)
    bs = add_to_buckets(bs, 11, 0, N, 0, True)
    assert [x.day for x in bs] == [10, 11, 12]


def test_add_to_buckets_does_not_mutate_its_input() -> None:
    before = (b(10),)
    add_to_buckets(before, 10, 0, N, 5, True)
    assert before == (b(10),)


# --------------------------------------------------------------------------- prune and windows


@pytest.mark.parametrize(
    ("today", "horizon", "kept"),
    [
        (20, 11, [10, 15, 20]),  # first kept day is 20 - 11 + 1 = 10
        (21, 11, [15, 20]),
        (29, 11, [20]),
        (31, 11, []),
        (5, 11, [10, 15, 20]),  # a today before the buckets prunes nothing
    ],
)
def test_prune_drops_days_that_left_the_horizon(today: int, horizon: int, kept: list[int]) -> None:
    bs = (b(10), b(15), b(20))
    assert [x.day for x in prune(bs, today, horizon)] == kept


BUCKETS = (
    DayBucket(1, (1, 0, 0), 0, True),
    DayBucket(5, (0, 2, 0), 300, False),
    DayBucket(7, (1, 1, 1), 50, True),
    DayBucket(9, (0, 0, 4), 0, True),  # after "today" below: never counted
)


@pytest.mark.parametrize(
    ("days", "events", "counts", "spend", "active_days"),
    [
        (1, 3, (1, 1, 1), 50, 1),
        (2, 3, (1, 1, 1), 50, 1),
        (3, 5, (1, 3, 1), 350, 1),
        (7, 6, (2, 3, 1), 350, 2),
        (30, 6, (2, 3, 1), 350, 2),
    ],
)
def test_window_sums_the_last_days_up_to_today(
    days: int, events: int, counts: tuple[int, ...], spend: int, active_days: int
) -> None:
    w = window(BUCKETS, 7, days, N)
    assert (w.days, w.events, w.counts, w.spend_cents, w.active_days) == (
        days,
        events,
        counts,
        spend,
        active_days,
    )
    assert active_days_in(BUCKETS, 7, days) == active_days
    assert spend_in(BUCKETS, 7, days) == spend


def test_empty_window() -> None:
    w = window((), 7, 30, N)
    assert (w.events, w.counts, w.spend_cents, w.active_days) == (0, (0, 0, 0), 0, 0)


# --------------------------------------------------------------------------- typical gap


@pytest.mark.parametrize(
    ("active_days", "today", "min_gaps", "gap"),
    [
        ([], 50, 2, None),
        ([10], 50, 1, None),
        ([10, 12], 50, 2, None),  # one gap, two needed
        ([10, 12], 50, 1, 2.0),
        ([10, 12, 13], 50, 2, 1.5),  # median of 2 and 1
        ([10, 11, 12, 20], 50, 2, 1.0),  # median of 1, 1, 8
        ([10, 12, 14, 40], 13, 2, None),  # days after today are not history yet
    ],
)
def test_typical_gap_is_the_median_gap_between_active_days(
    active_days: list[int], today: int, min_gaps: int, gap: float | None
) -> None:
    bs = tuple(b(d) for d in active_days)
    assert typical_gap_days(bs, today, min_gaps) == gap


def test_typical_gap_ignores_passive_days() -> None:
    bs = (b(10), b(11, active=False), b(12), b(14))
    assert typical_gap_days(bs, 20, 2) == 2.0


@pytest.mark.parametrize(
    ("gap", "threshold_days"),
    [
        (None, 7),  # no history: the default
        (0.5, 3),  # 1.5 days is below the floor
        (1.0, 3),
        (2.0, 6),
        (4.0, 12),
        (5.0, 14),  # 15 days is above the ceiling
        (60.0, 14),
    ],
)
def test_silence_threshold_is_clamped_multiple_of_the_typical_gap(
    gap: float | None, threshold_days: float
) -> None:
    assert silence_threshold_ms(gap, POLICY) == days_ms(threshold_days)


def test_facts_at_derives_silence_age_and_windows() -> None:
    state = UserState(
        user_id="u1",
        first_seen=at(days=-10),
        last_seen=at(days=-1),
        last_active=at(days=-2),
        evaluated_at=at(days=-1),
        buckets=(
            DayBucket(D0 - 10, (1,) + (0,) * 6, 0, True),
            DayBucket(D0 - 5, (1,) + (0,) * 6, 0, True),
            DayBucket(D0 - 2, (0, 0, 0, 1, 0, 0, 0), 12_345, True),
            DayBucket(D0 - 1, (0, 0, 0, 0, 1, 0, 0), 0, False),
        ),
    )
    f = facts_at(state, at(hours=12), POLICY)
    assert f.age_ms == days_ms(10.5)
    assert f.silence_ms == days_ms(2.5)
    assert f.silence_days == 2.5
    assert f.typical_gap_days == 4.0  # median of 5 and 3
    assert f.threshold_ms == days_ms(12)
    assert (f.active_days_7d, f.active_days_30d) == (2, 3)
    assert f.spend_window_cents == 12_345


def test_facts_of_a_user_never_active_count_silence_from_first_seen() -> None:
    state = UserState("u1", at(), at(), None, at())
    assert facts_at(state, at(days=3), POLICY).silence_ms == days_ms(3)


def test_silence_is_never_negative() -> None:
    state = UserState("u1", at(), at(days=2), at(days=2), at(days=2))
    assert facts_at(state, at(days=1), POLICY).silence_ms == 0


# --------------------------------------------------------------------------- properties

day_events = st.lists(
    st.tuples(
        st.integers(0, 40),  # day
        st.integers(0, N - 1),  # type index
        st.integers(0, 10_000),  # spend cents
        st.booleans(),  # active
    ),
    max_size=60,
)


@PROPERTY
@given(events=day_events, today=st.integers(0, 45), days=st.integers(1, 40))
def test_window_equals_a_direct_count_of_the_events_in_it(
    events: list[tuple[int, int, int, bool]], today: int, days: int
) -> None:
    bs: tuple[DayBucket, ...] = ()
    for day, idx, spend, active in events:
        bs = add_to_buckets(bs, day, idx, N, spend, active)
    inside = [e for e in events if today - days + 1 <= e[0] <= today]
    w = window(bs, today, days, N)
    assert w.events == len(inside) >= 0
    assert w.counts == tuple(sum(1 for e in inside if e[1] == i) for i in range(N))
    assert w.spend_cents == sum(e[2] for e in inside) >= 0
    assert w.active_days == len({e[0] for e in inside if e[3]})
    assert [x.day for x in bs] == sorted({e[0] for e in events})


@PROPERTY
@given(events=day_events, today=st.integers(0, 45))
def test_prune_keeps_every_window_within_the_horizon(
    events: list[tuple[int, int, int, bool]], today: int
) -> None:
    bs: tuple[DayBucket, ...] = ()
    for day, idx, spend, active in events:
        bs = add_to_buckets(bs, day, idx, N, spend, active)
    pruned = prune(bs, today, 10)
    for days in range(1, 11):
        assert window(pruned, today, days, N) == window(bs, today, days, N)
    assert all(x.day >= today - 10 + 1 for x in pruned)


@PROPERTY
@given(
    events=day_events,
    today=st.integers(0, 45),
    spend_days=st.integers(1, 40),
    min_gaps=st.integers(1, 4),
)
def test_decision_figures_in_one_pass_equal_the_separate_figures(
    events: list[tuple[int, int, int, bool]], today: int, spend_days: int, min_gaps: int
) -> None:
    bs: tuple[DayBucket, ...] = ()
    for day, idx, spend, active in events:
        bs = add_to_buckets(bs, day, idx, N, spend, active)
    assert decision_figures(bs, today, spend_days, min_gaps) == (
        active_days_in(bs, today, 7),
        active_days_in(bs, today, 30),
        spend_in(bs, today, spend_days),
        typical_gap_days(bs, today, min_gaps),
    )


@given(
    events=day_events,
    today=st.integers(0, 45),
    sizes=st.lists(st.integers(1, 50), min_size=1, max_size=5),
)
def test_windows_in_one_pass_equal_each_window(
    events: list[tuple[int, int, int, bool]], today: int, sizes: list[int]
) -> None:
    bs: tuple[DayBucket, ...] = ()
    for day, idx, spend, active in events:
        bs = add_to_buckets(bs, day, idx, N, spend, active)
    assert windows(bs, today, sizes, N) == [window(bs, today, days, N) for days in sizes]
