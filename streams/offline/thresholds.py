"""What `pulse fit` proposes besides the model: the dormant and churned silences, and the
warning level, each chosen on the calibration period only.

Stages. A calibration period is usually shorter than the silences that matter (a 9-month
history shows no 1-year silence), so the chance of returning after s days of silence is
extrapolated with the fitted BG/NBD: for every user as of the calibration end (x repeat active
days, t_x days from first to last), weighted by the chance their silence reaches s, the chance
of activity within the next W days. `dormant_after_days` is the first s where repeat users
(x >= 1) come back within the horizon with at most `dormant_return` (default 20%) chance, and
never less than the horizon, so a warning due within it is not cut short by dormancy;
`churned_after_days` is the first s where any user comes back within a year with at most
`churned_return` (default 15%).

Warning level. The same warning rule the engine runs is judged inside the calibration period
(the last `inner_days` of it, with its end as the history's end): the highest level whose
recall reaches `target_recall` with a median lead of at least `min_lead_days` before the
horizon closes. Higher levels mean fewer, more certain warnings.

Warning window. The rule is judged so for each window a warning may fire in: from the minimum
silence until the horizon (the probability may cross the level at any time), or at one silence
only (7, 10 or 14 days: the warning is decided then, once). The window kept is the most precise
single moment that meets the targets; failing that, the crossing (see `choose_window`).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TypeVar

from streams.core.bgnbd import DAYS_PER_WEEK, Params, p_no_activity

ONE_YEAR_DAYS = 365
LEVELS = tuple(round(0.50 + 0.01 * i, 2) for i in range(46))  # 0.50 .. 0.95
# Single moments of silence (days) at which a warning may be decided, besides the crossing.
MOMENTS_DAYS = (7, 10, 14)


@dataclass(frozen=True)
class Stages:
    dormant_after_days: int
    churned_after_days: int
    dormant_return: float  # the measured chance at the chosen silences (calibration model)
    churned_return: float


def return_share(
    params: Params,
    users: Sequence[tuple[int, int]],
    silence_days: int,
    within_days: int,
) -> float:
    """The chance a user silent for `silence_days` is active within the next `within_days`,
    averaged over `users` ((x, t_x) in days as of their last activity) weighted by the chance
    their silence gets that long. The model's own P0 (`bgnbd.p_no_activity`), once per
    distinct (x, t_x): users share few of them."""
    h_reach, h_back = silence_days / DAYS_PER_WEEK, within_days / DAYS_PER_WEEK
    reached = returned = 0.0
    for (x, t_x_days), n in Counter(users).items():
        t_x = t_x_days / DAYS_PER_WEEK
        reach = p_no_activity(params, x, t_x, t_x, h_reach)
        back = 1.0 - p_no_activity(params, x, t_x, t_x + h_reach, h_back)
        reached += n * reach
        returned += n * reach * back
    return returned / reached if reached > 0 else 0.0


def stage_thresholds(
    params: Params,
    users: Sequence[tuple[int, int]],
    horizon_days: float,
    *,
    dormant_return: float = 0.20,
    churned_return: float = 0.15,
    floor_days: float = 15,
) -> Stages:
    """The proposed dormant and churned silences (see the module docstring)."""
    h = round(horizon_days)
    repeat = [u for u in users if u[0] > 0] or list(users)
    start = max(h, int(floor_days) + 1)
    dormant, d_share = _first_silence(params, repeat, h, dormant_return, start)
    churned, c_share = _first_silence(params, users, ONE_YEAR_DAYS, churned_return, dormant + 1)
    return Stages(dormant, churned, round(d_share, 4), round(c_share, 4))


def _first_silence(
    params: Params, users: Sequence[tuple[int, int]], within: int, share: float, start: int
) -> tuple[int, int | float]:
    last = 5 * ONE_YEAR_DAYS
    got = return_share(params, users, start, within)
    if got <= share:
        return start, got
    # The share falls as silence grows: bisect for the first day at or below it.
    low, high = start, last
    if return_share(params, users, high, within) > share:
        return high, return_share(params, users, high, within)
    while high - low > 1:
        mid = (low + high) // 2
        if return_share(params, users, mid, within) <= share:
            high = mid
        else:
            low = mid
    return high, return_share(params, users, high, within)


@dataclass(frozen=True)
class LevelChoice:
    level: float
    met: bool  # False: no level met both targets; the one with the highest recall was taken
    precision: float | None
    recall: float | None
    median_lead_days: float | None


def choose_level(
    points: Mapping[float, tuple[float | None, float | None, float | None]],
    *,
    target_recall: float = 0.60,
    min_lead_days: float = 45,
    default: float = 0.7,
) -> LevelChoice:
    """The highest level whose (precision, recall, median lead) meets the targets; failing
    that, the level with the highest recall (ties: the higher level). With no churn to judge
    (every recall None), `default` is kept."""
    if all(rec is None for _, rec, _ in points.values()):
        return LevelChoice(default, False, None, None, None)
    ok = [
        lvl
        for lvl, (_, rec, lead) in points.items()
        if rec is not None and rec >= target_recall and lead is not None and lead >= min_lead_days
    ]
    if ok:
        best = max(ok)
        return LevelChoice(best, True, *points[best])
    best = max(points, key=lambda lvl: (points[lvl][1] or 0.0, lvl))
    return LevelChoice(best, False, *points[best])


Window = dict[str, float | None]
_T = TypeVar("_T")


def warning_windows(min_silence_days: float) -> list[Window]:
    """The warning windows `pulse fit` judges (ChurnModel fields): the crossing from the
    minimum silence first, then each single moment not before it."""
    windows: list[Window] = [{"min_silence_days": min_silence_days, "max_silence_days": None}]
    for days in MOMENTS_DAYS:
        if days >= min_silence_days:
            windows.append({"min_silence_days": float(days), "max_silence_days": float(days)})
    return windows


def choose_window(
    choices: Sequence[tuple[Window, LevelChoice, _T]],
) -> tuple[Window, LevelChoice, _T]:
    """The most precise single-moment window whose level meets the targets; when none does,
    the first (the crossing from the minimum silence).

    A moment is preferred to the crossing although the calibration ranks them alike (on CDNOW
    0.637 against 0.645 precision at recall 0.60): after the cut the crossing's level kept its
    precision but lost its recall (0.71: 0.713 / 0.475), the moment's kept both within noise
    (14 days at 0.60: 0.693 / 0.597), and on other CDNOW customers the issue measured the same
    (a moment-like rule 0.711 / 0.59, the crossing 0.701 / 0.53). A level the fit promises
    should hold where it is used."""
    best = None
    for i, (window, choice, _) in enumerate(choices):
        moment = window["max_silence_days"] is not None
        if moment and choice.met and choice.precision is not None:
            if best is None or choice.precision > (choices[best][1].precision or 0.0):
                best = i
    return choices[0 if best is None else best]
