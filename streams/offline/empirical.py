"""The empirical churn curves `pulse fit` learns beside BG/NBD: the population's chance of no
activity within the horizon after s days of silence, by how many active days a user has had.

Each silence of the calibration period is a gap from an active day to the next one, or, for
the last, a gap still open at the calibration end (censored). Kaplan-Meier over the gaps of a
stratum gives S(d), the chance a silence lasts d days or more; the curve is S(s + H) / S(s).
Beyond the longest silence the history can show the last value holds, and a running maximum
keeps the curve from falling as silence grows (an estimate is noisy where few gaps are left),
which the engine needs to solve for the day a level is reached.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

# Strata by active days so far: 1, 2, 3-4, 5 or more.
STRATA = (1, 2, 3, 5)
# A stratum with fewer gaps than this borrows the curve of the stratum below it.
MIN_GAPS = 30
# Silences beyond this are taken as the curve's last value.
MAX_SILENCE_DAYS = 730


def _gaps(
    days: Iterable[set[int]], end_day: int, low: int, high: int | None
) -> list[tuple[int, bool]]:
    """(length, ended) of every silence after a user's k-th active day, low <= k < high."""
    out: list[tuple[int, bool]] = []
    for user_days in days:
        ordered = sorted(d for d in user_days if d <= end_day)
        for k, day in enumerate(ordered, start=1):
            if k < low or (high is not None and k >= high):
                continue
            if k < len(ordered):
                out.append((ordered[k] - day, True))
            elif end_day > day:
                out.append((end_day - day, False))
    return out


def _survival(gaps: list[tuple[int, bool]], longest: int) -> list[float]:
    """Kaplan-Meier S(d) for d = 0..longest: the chance a silence lasts at least d days."""
    ended = [0] * (longest + 2)
    leaving = [0] * (longest + 2)  # gaps no longer at risk after day d (ended or censored)
    for length, done in gaps:
        length = min(length, longest + 1)
        leaving[length] += 1
        if done:
            ended[length] += 1
    at_risk = len(gaps)
    s, out = 1.0, [1.0]
    for d in range(1, longest + 1):
        # At risk at d: gaps of length >= d. A silence that ended at d days did not last d+.
        if at_risk > 0:
            s *= 1.0 - ended[d] / at_risk
        out.append(s)
        at_risk -= leaving[d]
    return out


def curve(gaps: list[tuple[int, bool]], horizon_days: int) -> list[float]:
    """P(no activity within `horizon_days` | s days of silence) for s = 0, 1, ...: monotone."""
    if not gaps:
        return [1.0]
    longest = min(max(length for length, _ in gaps), MAX_SILENCE_DAYS)
    surv = _survival(gaps, longest + horizon_days)
    values: list[float] = []
    best = 0.0
    for s in range(0, max(1, longest - horizon_days + 1)):
        base = surv[s]
        p = surv[s + horizon_days] / base if base > 0 else 1.0
        best = max(best, min(1.0, p))
        values.append(round(best, 6))
    return values


def empirical_curves(
    days: Mapping[str, set[int]], end_day: int, horizon_days: float
) -> list[dict[str, object]]:
    """The curves of each stratum (as `EmpiricalCurve` fields), lowest stratum first."""
    h = round(horizon_days)
    out: list[dict[str, object]] = []
    bounds = (*STRATA[1:], None)
    for low, high in zip(STRATA, bounds, strict=True):
        gaps = _gaps(days.values(), end_day, low, high)
        if out and len(gaps) < MIN_GAPS:
            continue
        out.append({"min_active_days": low, "p_churn": curve(gaps, h)})
    return out
