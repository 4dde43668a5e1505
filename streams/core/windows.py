"""Rolling activity from compact per-day buckets.

A user's history is at most `horizon` day buckets (only days with events are stored), so memory
per user is bounded whatever the event rate. Every figure here is a pure function of the
buckets, so it does not depend on the order events arrived in.
"""

from __future__ import annotations

from collections.abc import Sequence
from statistics import median

import msgspec


# gc=False: frozen, holding only numbers, strings and tuples of those or of other such structs,
# so never part of a reference cycle; untracked, its many short-lived copies do not set off
# garbage collections.
class DayBucket(msgspec.Struct, frozen=True, gc=False, array_like=True):
    """Everything kept about one UTC day of one user."""

    day: int
    counts: tuple[int, ...]  # per policy event type, plus one trailing "other"
    spend_cents: int = 0
    active: bool = False  # at least one non-passive event that day


class Window(msgspec.Struct, frozen=True):
    """Sums over the last `days` UTC days ending today."""

    days: int
    events: int
    counts: tuple[int, ...]
    spend_cents: int
    active_days: int


def add_to_buckets(
    buckets: tuple[DayBucket, ...],
    day: int,
    type_index: int,
    n_types: int,
    spend_cents: int,
    active: bool,
) -> tuple[DayBucket, ...]:
    """Buckets with one more event on `day` (kept sorted by day).

    `buckets` must be sorted by day with one bucket per day, as this function keeps them.
    """
    # Events mostly arrive in time order, so the day is the newest bucket's or a new one after
    # it: search from the newest end. The first bucket at or before `day` is the place.
    i = len(buckets)
    while i:
        b = buckets[i - 1]
        if b.day == day:
            counts = list(b.counts)
            counts[type_index] += 1
            new = DayBucket(day, tuple(counts), b.spend_cents + spend_cents, b.active or active)
            return buckets[: i - 1] + (new,) + buckets[i:]
        if b.day < day:
            break
        i -= 1
    counts = [0] * n_types
    counts[type_index] = 1
    return buckets[:i] + (DayBucket(day, tuple(counts), spend_cents, active),) + buckets[i:]


def has_any(buckets: tuple[DayBucket, ...], day: int, type_indexes: tuple[int, ...]) -> bool:
    """Whether `day` already holds an event of one of these types."""
    for b in buckets:
        if b.day == day:
            return any(b.counts[i] for i in type_indexes)
    return False


def is_active_day(buckets: tuple[DayBucket, ...], day: int) -> bool:
    """Whether `day` already holds activity. Looks from the newest day back, where events
    mostly land."""
    for b in reversed(buckets):
        if b.day <= day:
            return b.day == day and b.active
    return False


def prune(buckets: tuple[DayBucket, ...], today: int, horizon_days: int) -> tuple[DayBucket, ...]:
    """Drop buckets that have left the largest window."""
    first = today - horizon_days + 1
    if not buckets or buckets[0].day >= first:
        return buckets
    return tuple(b for b in buckets if b.day >= first)


def window(buckets: tuple[DayBucket, ...], today: int, days: int, n_types: int) -> Window:
    """Sums over days today-days+1 .. today (days after today are not counted)."""
    first = today - days + 1
    counts = [0] * n_types
    spend = active = 0
    for b in buckets:
        if first <= b.day <= today:
            for i, c in enumerate(b.counts):
                counts[i] += c
            spend += b.spend_cents
            active += b.active
    return Window(days, sum(counts), tuple(counts), spend, active)


def windows(
    buckets: tuple[DayBucket, ...], today: int, sizes: Sequence[int], n_types: int
) -> list[Window]:
    """`window` for each of `sizes`, in one pass over the buckets, newest day first.

    The windows nest (every one ends today), so each is the running sum at the point where
    the days leave it. A view document holds four: for users with a few weeks of activity
    (11 day buckets on average) they cost about half as much together as one by one.
    """
    order = sorted(set(sizes))
    made: dict[int, Window] = {}
    counts = [0] * n_types
    spend = active = 0
    k = 0
    for b in reversed(buckets):  # buckets are in day order, one per day
        if b.day > today:
            continue
        while k < len(order) and b.day <= today - order[k]:
            made[order[k]] = Window(order[k], sum(counts), tuple(counts), spend, active)
            k += 1
        if k == len(order):
            break
        for i, c in enumerate(b.counts):
            counts[i] += c
        spend += b.spend_cents
        active += b.active
    for size in order[k:]:
        made[size] = Window(size, sum(counts), tuple(counts), spend, active)
    return [made[size] for size in sizes]


def active_days_in(buckets: tuple[DayBucket, ...], today: int, days: int) -> int:
    """How many of the last `days` days had activity."""
    first = today - days + 1
    return sum(1 for b in buckets if b.active and first <= b.day <= today)


def spend_in(buckets: tuple[DayBucket, ...], today: int, days: int) -> int:
    """Spend (cents) over the last `days` days."""
    first = today - days + 1
    return sum(b.spend_cents for b in buckets if first <= b.day <= today)


def typical_gap_days(buckets: tuple[DayBucket, ...], today: int, min_gaps: int) -> float | None:
    """Median gap in days between consecutive active days up to today; None if too few gaps."""
    days = [b.day for b in buckets if b.active and b.day <= today]
    if len(days) < min_gaps + 1:
        return None
    return float(median(b - a for a, b in zip(days, days[1:], strict=False)))


def decision_figures(
    buckets: tuple[DayBucket, ...], today: int, spend_days: int, min_gaps: int
) -> tuple[int, int, int, float | None]:
    """(active days in 7, active days in 30, spend over `spend_days`, typical gap) in one pass.

    The same figures as `active_days_in`, `spend_in` and `typical_gap_days`; the rules read
    them at every evaluation, so they are gathered together.
    """
    s = scan(buckets, today, spend_days, min_gaps)
    return s.active_days_7d, s.active_days_30d, s.spend_cents, s.typical_gap_days


# gc=False: as DayBucket.
class Scan(msgspec.Struct, frozen=True, gc=False):
    """What one pass over sorted buckets finds as of `today`: the decision figures, and the
    first days of the kinds whose leaving a window changes them (any day, today or not)."""

    active_days_7d: int
    active_days_30d: int
    spend_cents: int  # over the spend window
    typical_gap_days: float | None
    first_active: int | None
    first_spend: int | None  # the first day with spend


def scan(buckets: tuple[DayBucket, ...], today: int, spend_days: int, min_gaps: int) -> Scan:
    """The figures of `decision_figures` and the first days a window exit depends on.

    `buckets` must be sorted by day (as `add_to_buckets` keeps them).
    """
    first7, first30, first_spend = today - 6, today - 29, today - spend_days + 1
    active7 = active30 = spend = 0
    gaps: list[int] = []
    gap_to = gaps.append  # bound once: this loop runs at every evaluation
    prev: int | None = None
    first_active = spend_day = None
    later = False
    for b in buckets:
        day = b.day
        if day > today:
            later = True
            break
        if b.spend_cents:
            if spend_day is None:
                spend_day = day
            if first_spend <= day:
                spend += b.spend_cents
        if b.active:
            if day >= first30:
                active30 += 1
                if day >= first7:
                    active7 += 1
            if prev is None:
                first_active = day
            else:
                gap_to(day - prev)
            prev = day
    if later:  # days after today count only as first days
        for b in buckets:
            if b.day > today:
                if b.spend_cents and spend_day is None:
                    spend_day = b.day
                if b.active and first_active is None:
                    first_active = b.day
    gap: float | None = None
    if len(gaps) >= min_gaps:
        gaps.sort()
        gap = median_of_sorted(gaps)
    return Scan(active7, active30, spend, gap, first_active, spend_day)


def median_of_sorted(gaps: list[int]) -> float:
    """The median of a sorted, non-empty list of day gaps: the typical gap."""
    mid = len(gaps) // 2
    return float(gaps[mid]) if len(gaps) % 2 else (gaps[mid - 1] + gaps[mid]) / 2
