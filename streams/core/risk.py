"""The churn probability: P(no activity within the model's horizon) for a user at a moment, and
the first day on which it reaches a level if the user stays silent.

Pure. It reads the fitted `ChurnModel` and the state's active-day statistics (distinct UTC days
with a non-passive event, the first and last of them), so it works for sessions as well as
purchases. With BG/NBD parameters the probability is the model's (streams/core/bgnbd.py) on

    x = active_days - 1,  t_x = (last_day - first_day) / 7,  T = (day - first_day) / 7  (weeks),

else the empirical curve of the user's stratum after `day - last_day` days of silence. Both
move only at UTC midnight (T counts whole days) and never fall while the user is silent, so
the engine schedules the moment a level is reached instead of polling.
"""

from __future__ import annotations

from typing import NamedTuple

from streams.core.bgnbd import DAYS_PER_WEEK, Params, p_alive, p_no_activity
from streams.core.eventtime import DAY_MS
from streams.core.policy import ChurnModel, EmpiricalCurve
from streams.core.state import UserState

# How far ahead a level is looked for: beyond it the user counts as never reaching it.
_MAX_DAYS_AHEAD = 36_500


class Stats(NamedTuple):
    """A user's active-day statistics (UTC day numbers)."""

    active_days: int
    first_day: int
    last_day: int


class Score(NamedTuple):
    """The probability of no activity within the horizon, and P(alive) where BG/NBD gave it."""

    p_churn: float
    p_alive: float | None


def stats_of(state: UserState) -> Stats | None:
    """The state's active-day statistics; None for a user never active (passive events only)."""
    first, last = state.first_active_day, state.last_active_day
    if state.active_days < 1 or first is None or last is None:
        return None
    return Stats(state.active_days, first, last)


def _params(model: ChurnModel) -> Params | None:
    r, alpha, a, b = model.r, model.alpha, model.a, model.b
    if r is None or alpha is None or a is None or b is None:
        return None
    return Params(r, alpha, a, b)


def _curve(model: ChurnModel, active_days: int) -> EmpiricalCurve:
    chosen = model.empirical[0]
    for curve in model.empirical:
        if curve.min_active_days <= active_days:
            chosen = curve
    return chosen


def score(model: ChurnModel, stats: Stats, day: int) -> Score:
    """The user's churn probability on UTC day `day` (>= stats.last_day)."""
    day = max(day, stats.last_day)
    params = _params(model)
    if params is None:
        values = _curve(model, stats.active_days).p_churn
        return Score(values[min(day - stats.last_day, len(values) - 1)], None)
    x = float(stats.active_days - 1)
    t_x = (stats.last_day - stats.first_day) / DAYS_PER_WEEK
    T = (day - stats.first_day) / DAYS_PER_WEEK
    h = model.horizon_days / DAYS_PER_WEEK
    return Score(p_no_activity(params, x, t_x, T, h), p_alive(params, x, t_x, T))


def p_churn(model: ChurnModel, stats: Stats, day: int) -> float:
    """`score(...).p_churn`."""
    return score(model, stats, day).p_churn


def day_reaching(model: ChurnModel, stats: Stats, level: float, from_day: int) -> int | None:
    """The first UTC day >= `from_day` on which the user's churn probability is `level` or more
    if they stay silent; None if it does not get there within a hundred years."""
    from_day = max(from_day, stats.last_day)
    params = _params(model)
    if params is None:
        values = _curve(model, stats.active_days).p_churn
        start = from_day - stats.last_day
        for s in range(min(start, len(values) - 1), len(values)):
            if values[s] >= level:
                return stats.last_day + max(s, start)
        return None

    def reached(day: int) -> bool:
        return p_churn(model, stats, day) >= level

    if reached(from_day):
        return from_day
    # Exponential search for a day that reaches the level, then bisection: the probability
    # never falls as days pass, so the first such day is found in some 2 log2(days) steps.
    low, step = from_day, 1
    high = from_day + step
    while not reached(high):
        low, step = high, step * 2
        high = from_day + step
        if step > _MAX_DAYS_AHEAD:
            return None
    while high - low > 1:
        mid = (low + high) // 2
        if reached(mid):
            high = mid
        else:
            low = mid
    return high


def warn_from(model: ChurnModel, last_active: int) -> int:
    """The earliest moment a warning may fire in the silence after `last_active` (epoch ms):
    the last millisecond of the UTC day on which `min_silence_days` of silence are complete.

    Warnings are decided at the end of a day: the probability only changes at midnight, and a
    user active at any time of that day (date-only histories stamp every event at 00:00) is
    not warned. A decision at midnight itself would come first when an event arrives at the
    same instant, and warn a user who is back.
    """
    return ((last_active + int(model.min_silence_days * DAY_MS)) // DAY_MS + 1) * DAY_MS - 1


def warning_at(model: ChurnModel, stats: Stats, last_active: int) -> int | None:
    """When the warning of the silence after `last_active` is due (epoch ms): the end of the
    first day from `warn_from`'s on whose churn probability reaches `warn_probability`."""
    earliest = warn_from(model, last_active)
    day = day_reaching(model, stats, model.warn_probability, earliest // DAY_MS)
    return None if day is None else (day + 1) * DAY_MS - 1
