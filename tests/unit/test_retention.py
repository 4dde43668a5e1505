"""Retention cohorts (streams/core/retention.py): the per-user bitmaps and their cells."""

from __future__ import annotations

from collections import Counter

import pytest
from hypothesis import given
from hypothesis import strategies as st
from msgspec.structs import replace

from streams.core.engine import Status, apply_event
from streams.core.eventtime import DAY_MS
from streams.core.retention import (
    DAY,
    MAX_DAYS,
    MAX_WEEKS,
    WEEK,
    cells,
    cohort_label,
    mark,
    marked,
    parts,
    period_moves,
    periods_of,
    totals,
    triangle,
    week_of,
    week_start,
)
from streams.core.state import UserState, decode_state, encode_state
from tests.unit.pulse_testkit import BASE, POLICY, PROPERTY, at, ev

D0 = BASE // DAY_MS  # 2026-11-22, a Sunday


def _expected(days: set[int]) -> tuple[int, int, int]:
    """The cohort fields straight from the set of active days (the definition)."""
    first = min(days)
    day_bits = week_bits = 0
    for d in days:
        day_bits |= 1 << min(d - first, MAX_DAYS + 1)
        week_bits |= 1 << min(week_of(d) - week_of(first), MAX_WEEKS + 1)
    return first, day_bits, week_bits


def _fold(days: list[int]) -> tuple[int, int, int]:
    cohort: int | None = None
    day_bits = week_bits = 0
    for d in days:
        cohort, day_bits, week_bits = mark(cohort, day_bits, week_bits, d)
    assert cohort is not None
    return cohort, day_bits, week_bits


def test_iso_weeks_start_on_monday() -> None:
    # 1970-01-01 was a Thursday; 2026-11-23 is a Monday.
    assert week_of(0) == week_of(-3) == 0 and week_of(-4) == -1 and week_of(4) == 1
    assert week_of(D0) == week_of(D0 - 6) and week_of(D0 + 1) == week_of(D0) + 1
    assert week_start(week_of(D0 + 1)) == D0 + 1


@pytest.mark.parametrize(
    ("days", "want"),
    [
        ([0], (0, 0b1, 0b1)),
        ([0, 0, 0], (0, 0b1, 0b1)),  # once per period, however many events
        ([0, 1, 7], (0, 0b10000011, 0b11)),  # Sunday, Monday (next week), next Sunday
        ([0, 30], (0, 1 | 1 << 30, 1 | 1 << 5)),
        ([0, 31], (0, 1 | 1 << 31, 1 | 1 << 5)),  # day 31: only "later"
        ([0, 45, 400], (0, 1 | 1 << 31, 1 | 1 << 7 | 1 << 27)),
        ([5, 3], (3, 0b101, 0b1)),  # a late event moves the cohort back two days
        ([7, 0], (0, 0b10000001, 0b11)),  # and into the previous ISO week
        ([30, 0], (0, 1 | 1 << 30, 1 | 1 << 5)),
        ([31, 1, 0], (0, 0b11 | 1 << 31, 0b11 | 1 << 5)),  # day 31 leaves the kept periods
    ],
)
def test_mark_sets_one_bit_per_active_period(days: list[int], want: tuple[int, int, int]) -> None:
    got = _fold([D0 + d for d in days])
    assert got == (D0 + want[0], want[1], want[2])
    assert got == _expected({D0 + d for d in days})


@PROPERTY
@given(st.lists(st.integers(0, 500), min_size=1, max_size=30), st.randoms())
def test_bitmaps_do_not_depend_on_arrival_order(days: list[int], rnd: object) -> None:
    shuffled = list(days)
    rnd.shuffle(shuffled)  # type: ignore[attr-defined]
    assert _fold([D0 + d for d in shuffled]) == _expected({D0 + d for d in days})


@PROPERTY
@given(st.lists(st.integers(0, 500), max_size=30), st.integers(0, 500), st.booleans())
def test_marked_changes_exactly_what_mark_changes(
    days: list[int], day: int, had_activity: bool
) -> None:
    # marked skips mark when the day's and week's bits are set already: the same answer.
    state = _state(days) if days else UserState("u", BASE, BASE, BASE, BASE)
    fields = (state.cohort_day, state.cohort_day_bits, state.cohort_week_bits)
    if state.cohort_day is None and had_activity:
        want: dict[str, int] = {}
    else:
        new = mark(*fields, D0 + day)
        names = ("cohort_day", "cohort_day_bits", "cohort_week_bits")
        want = {} if new == fields else dict(zip(names, new, strict=True))
    assert marked(state, had_activity, D0 + day) == want


@PROPERTY
@given(st.integers(0, 2**70), st.sampled_from([MAX_DAYS, MAX_WEEKS, 40, 64]))
def test_periods_are_the_set_bits_up_to_the_last_kept(bits: int, n: int) -> None:
    active, since = periods_of(bits, n)
    assert active == [k for k in range(n + 1) if bits >> k & 1]
    assert since == min(bits.bit_length() - 1, n)


def _state(days: list[int]) -> UserState:
    cohort, day_bits, week_bits = _fold([D0 + d for d in days])
    return UserState(
        "u", BASE, BASE, BASE, BASE, cohort_day=cohort, cohort_day_bits=day_bits,
        cohort_week_bits=week_bits,
    )  # fmt: skip


def test_cells_count_the_cohort_each_period_and_every_period_up_to_the_last() -> None:
    state = _state([0, 2, 9])  # Sunday, Tuesday, Tuesday a week later
    got = cells(state)
    c, w = D0, week_of(D0)
    want = {(DAY, c, "n"): 1, (WEEK, w, "n"): 1}
    want |= {(DAY, c, f"a{k}"): 1 for k in (0, 2, 9)}
    want |= {(DAY, c, f"s{k}"): 1 for k in range(10)}
    want |= {(WEEK, w, f"a{k}"): 1 for k in (0, 1, 2)}
    want |= {(WEEK, w, f"s{k}"): 1 for k in range(3)}
    assert got == Counter(want)
    assert parts(state) == [(DAY, c, [0, 2, 9], 9), (WEEK, w, [0, 1, 2], 2)]
    # Active after the last period kept: "on or after" holds for every period.
    late = cells(_state([0, 100]))
    assert late[(DAY, c, "s30")] == 1 and (DAY, c, "a30") not in late
    assert cells(None) == Counter() and cells(UserState("u", 0, 0, None, 0)) == Counter()


def test_triangle_has_sizes_and_leaves_periods_not_reached_empty() -> None:
    counts = totals([_state([0, 1]), _state([0, 3]), _state([1])])
    rows = triangle(counts, DAY, 3, cohorts=5, today=D0 + 2)
    assert [(r.cohort, r.size) for r in rows] == [(D0, 2), (D0 + 1, 1)]
    assert rows[0].active == [2, 1, 0, None] and rows[0].since == [2, 2, 1, None]
    assert rows[1].active == [1, 0, None, None]
    assert rows[0].rates(rows[0].active) == [1.0, 0.5, 0.0, None]
    assert [r.cohort for r in triangle(counts, DAY, 3, cohorts=1)] == [D0 + 1]
    assert triangle(counts, DAY, 3, cohorts=1)[0].active == [1, 0, 0, 0]
    with pytest.raises(ValueError, match="period must be one of day, week"):
        triangle(counts, "month", 3, cohorts=1)


def test_engine_keeps_cohorts_for_activity_only_and_never_counts_a_duplicate() -> None:
    r = apply_event(None, ev(at(0, hours=1), "points_earned"), POLICY)
    assert r.state.cohort_day is None  # passive: no activity, no cohort
    r = apply_event(r.state, ev(at(1, hours=1)), POLICY)
    assert (r.state.cohort_day, r.state.cohort_day_bits) == (D0 + 1, 1)
    r = apply_event(r.state, ev(at(2, hours=12)), POLICY)
    assert r.state.cohort_day_bits == 0b11
    dup = apply_event(r.state, ev(at(2, hours=12)), POLICY)
    assert dup.status == Status.DUPLICATE and dup.state.cohort_day_bits == 0b11
    # Late (within 48 h) and before the cohort day: the user moves to the earlier cohort.
    late = apply_event(r.state, ev(at(1, hours=-2)), POLICY)
    assert late.status == Status.APPLIED
    assert (late.state.cohort_day, late.state.cohort_day_bits) == (D0, 0b111)
    assert late.state.cohort_week_bits == 0b11  # Sunday, then the Monday's week
    back = decode_state(encode_state(late.state))
    assert cells(back) == cells(late.state)


def test_a_state_from_before_the_cohorts_stays_out_of_them() -> None:
    r = apply_event(None, ev(at(0)), POLICY)
    legacy = replace(r.state, cohort_day=None, cohort_day_bits=0, cohort_week_bits=0)
    after = apply_event(legacy, ev(at(1)), POLICY).state
    assert after.cohort_day is None and cells(after) == Counter()


def test_cohorts_are_labelled_by_iso_date_and_iso_week() -> None:
    assert cohort_label(DAY, D0) == "2026-11-22"
    assert cohort_label(WEEK, week_of(D0)) == "2026-W47"  # Sunday ends ISO week 47
    assert cohort_label(WEEK, week_of(D0 + 1)) == "2026-W48"
    # 2027-01-01, a Friday, is in ISO week 53 of 2026; the Monday after begins 2027-W01.
    assert cohort_label(WEEK, week_of(D0 + 40)) == "2026-W53"
    assert cohort_label(WEEK, week_of(D0 + 43)) == "2027-W01"


@PROPERTY
@given(
    st.lists(
        st.tuples(
            st.integers(0, 90 * 24),  # hours after BASE
            st.sampled_from(["page_view", "purchase", "points_earned"]),
            st.integers(0, 39),  # hours of delay: within the 48 h allowed lateness
        ),
        min_size=1,
        max_size=40,
    )
)
def test_out_of_order_events_give_the_cohorts_of_their_active_days(
    events: list[tuple[int, str, int]],
) -> None:
    """Events arriving late (up to 39 h after later ones) set the bits, and move the cohort,
    exactly as the set of active days says."""
    arrivals = sorted(enumerate(events), key=lambda e: (e[1][0] + e[1][2], e[0]))
    state = None
    for n, (hours, etype, _) in arrivals:
        state = apply_event(state, ev(at(hours=hours), etype, event_id=f"e{n}"), POLICY).state
    assert state is not None
    active = {(BASE + h * 3_600_000) // DAY_MS for h, t, _ in events if t != "points_earned"}
    if not active:
        assert state.cohort_day is None
        return
    cohort, day_bits, week_bits = _expected(active)
    assert (state.cohort_day, state.cohort_day_bits, state.cohort_week_bits) == (
        cohort,
        day_bits,
        week_bits,
    )


@given(
    old=st.integers(min_value=0, max_value=(1 << 40) - 1),
    new=st.integers(min_value=0, max_value=(1 << 40) - 1),
    n=st.sampled_from([MAX_DAYS, MAX_WEEKS]),
)
def test_period_moves_are_the_difference_of_the_cells(old: int, new: int, n: int) -> None:
    """What the view's writer sends instead of both parts: the fields that differ between the
    two bitmaps' cells in one cohort, +1 joining and -1 leaving."""

    def fields(bits: int) -> set[str]:
        active, since = periods_of(bits, n)
        return {f"a{k}" for k in active} | {f"s{k}" for k in range(since + 1)}

    moves = period_moves(old, new, n)
    got = dict(zip(moves[::2], moves[1::2], strict=True))
    assert len(got) == len(moves) // 2  # each field once
    want = {f: 1 for f in fields(new) - fields(old)} | {f: -1 for f in fields(old) - fields(new)}
    assert got == want
