"""Retention cohorts: in which days and ISO weeks after their first activity a user was active.

A user's cohort is the UTC day of their first activity (an event of a non-passive type, the
activity `windows.is_active_day` counts) and the ISO week (Monday to Sunday, UTC) of that day.
The state keeps two small bitmaps relative to it:

- bit k of `cohort_day_bits` (k = 0..MAX_DAYS): active on the cohort day + k;
- bit k of `cohort_week_bits` (k = 0..MAX_WEEKS): active in the cohort week + k;
- one bit more (MAX_DAYS + 1, MAX_WEEKS + 1): active at some period after the last one kept.

A user therefore counts at most once per period whatever their event rate, and "still active
on or after period k" (unbounded retention) is "the highest set bit is at least k". The
bitmaps always span the maxima; the policy's `retention_days` and `retention_weeks` only say
how much of the triangle is reported, so changing them needs no rebuild.

Late events are exact: a late event within the allowed lateness sets an earlier bit, and one
before the cohort day moves the user to that earlier cohort (the bitmaps are shifted, so every
period keeps its date). A state written before the cohorts were kept that already had activity
has no cohort: its first activity is not known, so it stays out of the cohort counts for good.

The counts are sums of each user's *cells*, (period, cohort, field) -> 1, the fields being
`n` (the cohort size), `a<k>` (active in period k) and `s<k>` (active in period k or later):
the worker's partition indexes, the Redis view and the replay all add and remove the same
cells as states change, so their totals are equal by construction.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from datetime import date, timedelta
from functools import lru_cache
from typing import Protocol

# The periods kept after the cohort's own (k = 0..MAX): 30 days and 26 weeks.
MAX_DAYS = 30
MAX_WEEKS = 26

DAY, WEEK = "day", "week"
PERIODS = (DAY, WEEK)

# (period, cohort, field) -> users. A cohort is a UTC day number (days since 1970-01-01) or an
# ISO week number (see `week_of`).
Cell = tuple[str, int, str]


class Cohorted(Protocol):
    """The state fields the cohorts are kept in (streams.core.state.UserState)."""

    @property
    def cohort_day(self) -> int | None: ...
    @property
    def cohort_day_bits(self) -> int: ...
    @property
    def cohort_week_bits(self) -> int: ...


def week_of(day: int) -> int:
    """The ISO week of UTC day `day`, as a number: weeks since Monday 1969-12-29 (day 0, a
    Thursday, is in week 0). Consecutive ISO weeks have consecutive numbers."""
    return (day + 3) // 7


def week_start(week: int) -> int:
    """The UTC day number of the Monday that begins `week` (inverse of `week_of`)."""
    return week * 7 - 3


_EPOCH = date(1970, 1, 1)


def day_label(day: int) -> str:
    """UTC day number `day` as an ISO date, e.g. 2026-11-22."""
    return (_EPOCH + timedelta(days=day)).isoformat()


def cohort_label(period: str, cohort: int) -> str:
    """A cohort as people name it: its ISO date (day) or ISO week, e.g. 2026-W48 (week)."""
    if period == DAY:
        return day_label(cohort)
    year, week, _ = (_EPOCH + timedelta(days=week_start(cohort))).isocalendar()
    return f"{year}-W{week:02d}"


def _limit(bits: int, n: int) -> int:
    """`bits` with anything past period `n` folded into the "later" bit n + 1."""
    kept = bits & ((1 << (n + 1)) - 1)
    return kept | (1 << (n + 1)) if bits >> (n + 1) else kept


def _set(bits: int, k: int, n: int) -> int:
    return bits | (1 << (n + 1 if k > n + 1 else k))


def mark(cohort_day: int | None, day_bits: int, week_bits: int, day: int) -> tuple[int, int, int]:
    """The cohort fields after activity on UTC day `day`: (cohort day, day bits, week bits).

    With no cohort yet, `day` starts it. Before the cohort day, the user moves to the cohort
    of `day`: every bit moves up by the distance, and what lands past the last period kept
    folds into the "later" bit.
    """
    if cohort_day is None:
        return day, 1, 1
    if day < cohort_day:
        shift_weeks = week_of(cohort_day) - week_of(day)
        day_bits = _limit(day_bits << (cohort_day - day), MAX_DAYS)
        week_bits = _limit(week_bits << shift_weeks, MAX_WEEKS)
        cohort_day = day
    return (
        cohort_day,
        _set(day_bits, day - cohort_day, MAX_DAYS),
        _set(week_bits, week_of(day) - week_of(cohort_day), MAX_WEEKS),
    )


def marked(state: Cohorted, had_activity: bool, day: int) -> dict[str, int]:
    """The state changes activity on `day` makes (for `msgspec.structs.replace`); none when
    nothing changes.

    `had_activity`: the user had activity before this event (the state's `last_active`). With
    activity but no cohort, the state predates the cohorts and stays out of them.
    """
    c = state.cohort_day
    if c is None:
        if had_activity:
            return {}
    elif day >= c:
        # Most events land on a day and in a week already marked: nothing to build. (The
        # bits' positions as `mark` finds them; conditional expressions, not `min`: this runs
        # at every event.)
        k = day - c
        if state.cohort_day_bits >> (k if k <= MAX_DAYS else MAX_DAYS + 1) & 1:
            w = week_of(day) - week_of(c)
            if state.cohort_week_bits >> (w if w <= MAX_WEEKS else MAX_WEEKS + 1) & 1:
                return {}
    cohort, day_bits, week_bits = mark(
        state.cohort_day, state.cohort_day_bits, state.cohort_week_bits, day
    )
    if (cohort, day_bits, week_bits) == (
        state.cohort_day,
        state.cohort_day_bits,
        state.cohort_week_bits,
    ):
        return {}
    return {"cohort_day": cohort, "cohort_day_bits": day_bits, "cohort_week_bits": week_bits}


# For each byte of a bitmap (0..3, bits 0..31) and each value of it, the periods its set bits
# stand for, lowest first: periods_of reads a bitmap a byte at a time.
_PERIODS_IN_BYTE = tuple(
    tuple(tuple(8 * i + k for k in range(8) if v >> k & 1) for v in range(256)) for i in range(4)
)


def periods_of(bits: int, n: int) -> tuple[list[int], int]:
    """(the periods k <= n with activity, the last k <= n the user was active on or after)."""
    active: list[int] = []
    rest = bits & ((1 << (n + 1)) - 1)
    for table in _PERIODS_IN_BYTE:
        if not rest:
            break
        if rest & 0xFF:
            active.extend(table[rest & 0xFF])
        rest >>= 8
    while rest:  # past bit 31: not with the periods kept today (MAX_DAYS, MAX_WEEKS)
        low = rest & -rest
        active.append(31 + low.bit_length())
        rest ^= low
    return active, min(bits.bit_length() - 1, n)


# One user's part of one cohort: (period, cohort, periods active, last "on or after" period).
Part = tuple[str, int, list[int], int]


def parts(state: Cohorted) -> list[Part]:
    """The user's part of the cohort counts: none without a cohort, else one per period."""
    day = state.cohort_day
    if day is None:
        return []
    days, days_since = periods_of(state.cohort_day_bits, MAX_DAYS)
    weeks, weeks_since = periods_of(state.cohort_week_bits, MAX_WEEKS)
    return [(DAY, day, days, days_since), (WEEK, week_of(day), weeks, weeks_since)]


# The count fields of periods 0..63: "active in period k", "active in period k or later".
ACTIVE_IN = tuple(f"a{k}" for k in range(64))
ACTIVE_SINCE = tuple(f"s{k}" for k in range(64))


def cells(state: Cohorted | None) -> Counter[Cell]:
    """The user's cells: (period, cohort, "n"), (.., "a<k>") per period active, (.., "s<k>")
    for k up to the last period active. An erased or absent user (None) has none."""
    out: Counter[Cell] = Counter()
    if state is None:
        return out
    for period, cohort, active, since in parts(state):
        out[(period, cohort, "n")] = 1
        for k in active:
            out[(period, cohort, ACTIVE_IN[k])] = 1
        for k in range(since + 1):
            out[(period, cohort, ACTIVE_SINCE[k])] = 1
    return out


@lru_cache(maxsize=65_536)
def period_moves(old: int, new: int, n: int) -> tuple[str | int, ...]:
    """(field, delta, field, delta, ...): how one cohort's fields move when a user's period
    bits go from `old` to `new` (periods 0..n, read as `periods_of` reads them), that is the
    `cells` of the new bits minus those of the old within one cohort; `n` does not move.
    Cached: most users' changes are one more period, and users active on the same periods
    share the answer."""
    moves: list[str | int] = []
    kept = (1 << (n + 1)) - 1
    for bits, delta in (((new & ~old) & kept, 1), ((old & ~new) & kept, -1)):
        while bits:
            low = bits & -bits
            moves += (ACTIVE_IN[low.bit_length() - 1], delta)
            bits ^= low
    last_old = min(old.bit_length() - 1, n)
    last_new = min(new.bit_length() - 1, n)
    for k in range(last_old + 1, last_new + 1):
        moves += (ACTIVE_SINCE[k], 1)
    for k in range(last_new + 1, last_old + 1):
        moves += (ACTIVE_SINCE[k], -1)
    return tuple(moves)


def same_cohorts(old: Cohorted | None, new: Cohorted | None) -> bool:
    """Whether the two states have the same cells (cheap: compares the three fields)."""
    if old is None or new is None:
        return old is new
    return (old.cohort_day, old.cohort_day_bits, old.cohort_week_bits) == (
        new.cohort_day,
        new.cohort_day_bits,
        new.cohort_week_bits,
    )


def totals(states: Iterable[Cohorted]) -> Counter[Cell]:
    """The sum of the users' cells."""
    out: Counter[Cell] = Counter()
    for state in states:
        out.update(cells(state))
    return out


class Cohort:
    """One row of the triangle: a cohort's size and, for k = 0..n, its users active in period
    k and active in period k or later (None: a period not reached yet)."""

    def __init__(
        self, period: str, cohort: int, size: int, active: list[int | None], since: list[int | None]
    ) -> None:
        self.period = period
        self.cohort = cohort
        self.size = size
        self.active = active
        self.since = since

    @property
    def start_day(self) -> int:
        """The UTC day number the cohort begins on (its day, or its week's Monday)."""
        return self.cohort if self.period == DAY else week_start(self.cohort)

    def rates(self, values: list[int | None]) -> list[float | None]:
        """`values` as shares of the cohort, rounded to 4 places (None stays None)."""
        return [None if v is None or not self.size else round(v / self.size, 4) for v in values]


def triangle(
    counts: Mapping[Cell, int], period: str, n: int, cohorts: int, today: int | None = None
) -> list[Cohort]:
    """The last `cohorts` cohorts of `period` with users, oldest first, periods 0..n.

    `today` (a UTC day number, the clock's day): periods that begin after it are None, not
    yet reached; the period `today` is in is counted so far. None: every period as counted.
    Raises ValueError for an unknown period.
    """
    if period not in PERIODS:
        raise ValueError(f"period must be one of {', '.join(PERIODS)}")
    sizes = {c: v for (p, c, f), v in counts.items() if p == period and f == "n" and v > 0}
    rows: list[Cohort] = []
    for cohort in sorted(sizes)[-cohorts:] if cohorts > 0 else []:
        current = None if today is None else _period_of(period, cohort, today)
        active: list[int | None] = []
        since: list[int | None] = []
        for k in range(n + 1):
            if current is not None and k > current:  # the period has not begun by `today`
                active.append(None)
                since.append(None)
                continue
            active.append(counts.get((period, cohort, f"a{k}"), 0))
            since.append(counts.get((period, cohort, f"s{k}"), 0))
        rows.append(Cohort(period, cohort, sizes[cohort], active, since))
    return rows


def _period_of(period: str, cohort: int, today: int) -> int:
    """Which period after `cohort` UTC day `today` is in."""
    return today - cohort if period == DAY else week_of(today) - cohort


def cohort_doc(row: Cohort) -> dict[str, object]:
    """A triangle row as the API, the replay's summary.json and its report show it: label,
    first day, size, and per period the users and the share of the cohort (None: not
    reached), active in the period (`active`) and in it or later (`still_active`)."""
    return {
        "cohort": cohort_label(row.period, row.cohort),
        "start": day_label(row.start_day),
        "size": row.size,
        "active": row.active,
        "active_rate": row.rates(row.active),
        "still_active": row.since,
        "still_active_rate": row.rates(row.since),
    }
