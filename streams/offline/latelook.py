"""The late look `pulse fit` may add to a warning decided at one moment of silence.

A rule that decides at one moment (say at 14 days of silence, warn if P0 >= 0.60) has one level
to trade precision for recall. The late look splits it: a higher level at the moment, and the
users it does not warn looked at once more later in the same silence (21, 30 or 45 days), with
a level of their own. The median lead bounds it: the look's catches come later, so most catches
must still come from the moment.

Every combination (the moment's level, the late moment, the late level) is judged at once, the
way the fit judges the single moment: inside the last days of the calibration with its end as
the history's end, by the rules of `evaluation.judged_silences`, from each silence's churn
probability at the two moments (the score the engine decides with).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from streams.core.eventtime import DAY_MS
from streams.core.policy import ChurnModel
from streams.core.risk import Stats, day_end_after, score
from streams.offline.evaluation import Silences

LATE_MOMENTS_DAYS = (21, 30, 45)
LATE_LEVELS = tuple(round(0.30 + 0.01 * i, 2) for i in range(66))  # 0.30 .. 0.95

Mask = npt.NDArray[np.bool_]


@dataclass(frozen=True)
class Look:
    """A rule judged: warn at `moment_days` of silence if P0 >= `level`, else (when set) at
    `late_days` if P0 >= `late_level`."""

    moment_days: float
    level: float
    late_days: float | None
    late_level: float | None
    warnings: int
    precision: float | None
    recall: float | None
    median_lead_days: float | None

    def meets(self, target_recall: float, min_lead_days: float) -> bool:
        return (
            self.precision is not None
            and self.recall is not None
            and self.recall >= target_recall
            and self.median_lead_days is not None
            and self.median_lead_days >= min_lead_days
        )


@dataclass(frozen=True)
class _Moment:
    """Each silence at one moment of it: the churn probability, and what a warning then does."""

    p: npt.NDArray[np.float64]
    fires: Mask  # the user is not back by then (and the history reaches it)
    judged: Mask  # fires, from judge_from on, not censored
    true: Mask  # judged and came true
    catches: Mask  # fires, from judge_from on, and catches the silence's churn
    lead_days: npt.NDArray[np.float64]


def _moment(model: ChurnModel, s: Silences, days: float) -> _Moment:
    n = len(s.silences)
    p = np.empty(n)
    fires, judged, true, catches = (np.zeros(n, dtype=bool) for _ in range(4))
    lead = np.empty(n)
    start = s.judge_from
    for k, (_, active, last, nxt, churn) in enumerate(s.silences):
        t = day_end_after(last, days)
        p[k] = score(model, Stats(len(active), active[0], active[-1]), t // DAY_MS).p_churn
        lead[k] = (last + s.horizon - t) / DAY_MS
        if (t >= nxt) if nxt is not None else (t > s.end):
            continue
        fires[k] = True
        if start is not None and t < start:
            continue
        catches[k] = churn and t <= last + s.horizon
        if nxt is None and t + s.horizon > s.end:
            continue  # censored
        judged[k] = True
        true[k] = nxt is None or nxt - t > s.horizon
    return _Moment(p, fires, judged, true, catches, lead)


def _look(
    s: Silences,
    first: tuple[_Moment, Mask],
    second: tuple[_Moment, Mask] | None,
) -> tuple[int, float | None, float | None, float | None]:
    """(warnings judged, precision, recall, median lead) of the warnings in `first` and
    `second` (a moment and the silences it warns)."""
    warned = hits = caught = 0
    leads = []
    for at, mask in (first,) if second is None else (first, second):
        warned += int(np.count_nonzero(at.judged & mask))
        hits += int(np.count_nonzero(at.true & mask))
        got = at.catches & mask
        caught += int(np.count_nonzero(got))
        leads.append(at.lead_days[got])
    lead = np.concatenate(leads)
    return (
        warned,
        hits / warned if warned else None,
        caught / s.churns if s.churns else None,
        float(np.median(lead)) if len(lead) else None,
    )


def looks(
    model: ChurnModel,
    silences: Silences,
    moment_days: float,
    levels: Sequence[float],
    late_moments: Iterable[float] = LATE_MOMENTS_DAYS,
    late_levels: Sequence[float] = LATE_LEVELS,
) -> list[Look]:
    """Every rule "at `moment_days`, P0 >= level; else at a late moment, P0 >= late level"
    of the grid judged on `silences`, and the moment alone at each level (no late look)."""
    at = _moment(model, silences, moment_days)
    found: list[Look] = []
    for level in levels:
        warned = at.fires & (at.p >= level)
        found.append(Look(moment_days, level, None, None, *_look(silences, (at, warned), None)))
    for late_days in late_moments:
        if late_days <= moment_days:
            continue
        late = _moment(model, silences, late_days)
        for level in levels:
            warned = at.fires & (at.p >= level)
            rest = ~warned & late.fires
            for late_level in late_levels:
                figures = _look(silences, (at, warned), (late, rest & (late.p >= late_level)))
                found.append(Look(moment_days, level, late_days, late_level, *figures))
    return found


def choose_look(
    candidates: Iterable[Look], target_recall: float, min_lead_days: float
) -> Look | None:
    """The most precise rule that meets the targets (ties: the higher recall, then the higher
    levels: fewer warnings for the same catches); None when none does."""
    ok = [c for c in candidates if c.meets(target_recall, min_lead_days)]
    if not ok:
        return None
    return max(ok, key=lambda c: (c.precision, c.recall, c.level, c.late_level or 0.0))
