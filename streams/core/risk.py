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

from streams.core.bgnbd import DAYS_PER_WEEK, Params, p_no_activity, p_no_activity_and_alive
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


class _Prepared(NamedTuple):
    params: Params | None
    horizon_weeks: float


# The last model prepared, as `policy.derived` keeps the last policy's figures: a model is
# frozen, so what is derived from it holds while it is the same object (kept referenced here
# so its id cannot be reused). The engine scores a user at every event and asks when their
# warning is due; both depend only on the active-day count and on days counted from the first
# active day, so they are memoised under those relative figures, which users share: a new
# user's first event, or a regular's tenth, is the same question whoever asks it.
_last: tuple[ChurnModel, _Prepared] | None = None
_scores: dict[tuple[int, int, int], Score] = {}
_reached: dict[tuple[int, int, int, int, float], int | None] = {}
_KEPT = 65_536


def _prepared(model: ChurnModel) -> _Prepared:
    global _last
    last = _last
    if last is not None and last[0] is model:
        return last[1]
    r, alpha, a, b = model.r, model.alpha, model.a, model.b
    missing = r is None or alpha is None or a is None or b is None
    params = None if missing else Params(r, alpha, a, b)  # type: ignore[arg-type]
    prepared = _Prepared(params, model.horizon_days / DAYS_PER_WEEK)
    _last = (model, prepared)
    _scores.clear()
    _reached.clear()
    return prepared


def _curve(model: ChurnModel, active_days: int) -> EmpiricalCurve:
    chosen = model.empirical[0]
    for curve in model.empirical:
        if curve.min_active_days <= active_days:
            chosen = curve
    return chosen


def score(model: ChurnModel, stats: Stats, day: int) -> Score:
    """The user's churn probability on UTC day `day` (>= stats.last_day)."""
    prepared = _prepared(model)
    first = stats.first_day
    key = (stats.active_days, stats.last_day - first, max(day, stats.last_day) - first)
    known = _scores.get(key)
    if known is not None:
        return known
    params = prepared.params
    if params is None:
        found = Score(p_churn(model, stats, day), None)
    else:
        x = float(stats.active_days - 1)
        t_x = key[1] / DAYS_PER_WEEK
        T = key[2] / DAYS_PER_WEEK
        found = Score(*p_no_activity_and_alive(params, x, t_x, T, prepared.horizon_weeks))
    if len(_scores) >= _KEPT:
        _scores.clear()
    _scores[key] = found
    return found


def p_churn(model: ChurnModel, stats: Stats, day: int) -> float:
    """The user's probability of no activity within the horizon on UTC day `day`."""
    prepared = _prepared(model)
    day = max(day, stats.last_day)
    params = prepared.params
    if params is None:
        values = _curve(model, stats.active_days).p_churn
        return values[min(day - stats.last_day, len(values) - 1)]
    x = float(stats.active_days - 1)
    t_x = (stats.last_day - stats.first_day) / DAYS_PER_WEEK
    T = (day - stats.first_day) / DAYS_PER_WEEK
    return p_no_activity(params, x, t_x, T, prepared.horizon_weeks)


def day_reaching(
    model: ChurnModel, stats: Stats, level: float, from_day: int, until_day: int | None = None
) -> int | None:
    """The first UTC day >= `from_day` on which the user's churn probability is `level` or more
    if they stay silent; None if it does not get there by `until_day` (default: within a
    hundred years)."""
    from_day = max(from_day, stats.last_day)
    last = from_day + _MAX_DAYS_AHEAD if until_day is None else until_day
    if last < from_day:
        return None
    if _prepared(model).params is None:
        day = _curve_reaching(model, stats, level, from_day)
        return day if day is not None and day <= last else None
    first = stats.first_day
    key = (stats.active_days, stats.last_day - first, from_day - first, last - first, level)
    if key in _reached:
        offset = _reached[key]
        return None if offset is None else first + offset
    day = _search(model, stats, level, from_day, last)
    if len(_reached) >= _KEPT:
        _reached.clear()
    _reached[key] = None if day is None else day - first
    return day


def _curve_reaching(model: ChurnModel, stats: Stats, level: float, from_day: int) -> int | None:
    values = _curve(model, stats.active_days).p_churn
    start = from_day - stats.last_day
    for s in range(min(start, len(values) - 1), len(values)):
        if values[s] >= level:
            return stats.last_day + max(s, start)
    return None


def _search(model: ChurnModel, stats: Stats, level: float, from_day: int, last: int) -> int | None:
    def reached(day: int) -> bool:
        return p_churn(model, stats, day) >= level

    if reached(from_day):
        return from_day
    if not reached(last):
        return None
    # Bisection between a day below the level and one at it: the probability never falls as
    # days pass, so the first such day is found in log2(last - from_day) steps.
    low, high = from_day, last
    while high - low > 1:
        mid = (low + high) // 2
        if reached(mid):
            high = mid
        else:
            low = mid
    return high


def day_end_after(last_active: int, days: float) -> int:
    """The last millisecond of the UTC day on which `days` of silence after `last_active`
    (epoch ms) are complete.

    Warnings are decided at the end of a day: the probability only changes at midnight, and a
    user active at any time of that day (date-only histories stamp every event at 00:00) is
    not warned. A decision at midnight itself would come first when an event arrives at the
    same instant, and warn a user who is back.
    """
    return ((last_active + int(days * DAY_MS)) // DAY_MS + 1) * DAY_MS - 1


def warn_from(model: ChurnModel, last_active: int) -> int:
    """The earliest moment a warning may fire in the silence after `last_active` (epoch ms):
    the end of the day on which `min_silence_days` of silence are complete."""
    return day_end_after(last_active, model.min_silence_days)


def late_look_at(model: ChurnModel, last_active: int) -> int | None:
    """The moment of the model's late look in the silence after `last_active` (None: the
    model has none): the end of the day on which `late_silence_days` are complete."""
    days = model.late_silence_days
    return None if days is None else day_end_after(last_active, days)


def late_warning_at(model: ChurnModel, stats: Stats, last_active: int) -> int | None:
    """When the late look warns in the silence after `last_active`: its moment, if the churn
    probability has reached `late_warn_probability` by then (the same score the engine
    decides with); None otherwise, or without a late look. The look lies within the horizon
    (ChurnModel's validation)."""
    at, level = late_look_at(model, last_active), model.late_warn_probability
    if at is None or level is None:
        return None
    return at if score(model, stats, at // DAY_MS).p_churn >= level else None


def warning_at(
    model: ChurnModel, stats: Stats, last_active: int, level: float | None = None
) -> int | None:
    """When the warning of the silence after `last_active` is due (epoch ms): the end of the
    first day from `warn_from`'s on whose churn probability reaches `level` (default: the
    model's `warn_probability`; other levels are for judging the rule offline). None when that
    is not within the horizon of silence (a warning after it is too late to act on, and on
    CDNOW such late warnings came true less often than the early ones)."""
    earliest = warn_from(model, last_active)
    target = model.warn_probability if level is None else level
    # The last day whose end is still within the horizon of silence, and within the window.
    last_day = (last_active + int(model.horizon_days * DAY_MS)) // DAY_MS - 1
    if model.max_silence_days is not None:
        last_day = min(last_day, (last_active + int(model.max_silence_days * DAY_MS)) // DAY_MS)
    day = day_reaching(model, stats, target, earliest // DAY_MS, last_day)
    if day is None:
        return None
    due = (day + 1) * DAY_MS - 1
    return due if within_window(model, last_active, due) else None


def within_window(model: ChurnModel, last_active: int, at: int) -> bool:
    """Whether a warning at `at` may still fire in the silence after `last_active`: not after
    the end of the day on which `max_silence_days` are complete (when set), and never once the
    user has been silent for the whole horizon, when the churn has happened (dormancy says the
    rest)."""
    if at - last_active >= int(model.horizon_days * DAY_MS):
        return False
    latest = model.max_silence_days
    if latest is None:
        return True
    return at < ((last_active + int(latest * DAY_MS)) // DAY_MS + 1) * DAY_MS
