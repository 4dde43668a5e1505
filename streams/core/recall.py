"""Did the recall work? Tallies of warned users per group, tier and warning reason, their
reactivation rates, and the uplift of the treated group over the holdout group.

Pure. Each user's state keeps its own tallies (`RecallCell`s, at most one per group, tier and
reason); the totals are sums of those, kept as states change (worker gauges, the Redis view)
or summed over a replay's final states, so nothing scans history.

A warning is *judged* when its attribution window has ended (or, earlier, when the next
warning of the same user replaces it: the user must have come back by then). It is
*reactivated* if the user left at_risk (or dormant/churned) for active or reactivated within
the window, otherwise *not reactivated*; until judged it is *open*. Rates are taken over the
judged warnings only, so early returners are not counted before the others had their full
window.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import msgspec

from streams.core.holdout import Group
from streams.core.state import RecallCell

# Two-sided 95%: the standard normal quantile at 0.975.
Z95 = 1.959963984540054


class Outcome:
    OPEN = "open"
    REACTIVATED = "reactivated"
    NOT_REACTIVATED = "not_reactivated"
    ALL = (OPEN, REACTIVATED, NOT_REACTIVATED)


Tally = tuple[RecallCell, ...]  # sorted by (group, tier, reason), one cell each


def _bump(tally: Tally, group: str, tier: str, reason: str, **add: int) -> Tally:
    cells = {(c.group, c.tier, c.reason): c for c in tally}
    old = cells.get((group, tier, reason), RecallCell(group, tier, reason))
    cells[(group, tier, reason)] = msgspec.structs.replace(
        old, **{k: getattr(old, k) + v for k, v in add.items()}
    )
    return tuple(cells[k] for k in sorted(cells))


def count_warning(tally: Tally, group: str, tier: str, reason: str) -> Tally:
    """The tally with one more (open) warning in the cell."""
    return _bump(tally, group, tier, reason, warned=1)


def count_judged(tally: Tally, group: str, tier: str, reason: str, reactivated: bool) -> Tally:
    """The tally with one open warning of the cell judged."""
    if reactivated:
        return _bump(tally, group, tier, reason, reactivated=1)
    return _bump(tally, group, tier, reason, not_reactivated=1)


def cell_counts(tally: Iterable[RecallCell]) -> dict[tuple[str, str, str, str], int]:
    """{(group, tier, reason, outcome): warnings} of a user's tally, zero counts left out."""
    out: dict[tuple[str, str, str, str], int] = {}
    for c in tally:
        for outcome, n in (
            (Outcome.OPEN, c.open),
            (Outcome.REACTIVATED, c.reactivated),
            (Outcome.NOT_REACTIVATED, c.not_reactivated),
        ):
            if n:
                out[(c.group, c.tier, c.reason, outcome)] = n
    return out


# -- totals and statistics ---------------------------------------------------------------


@dataclass(frozen=True)
class Counts:
    """Warnings of one group in one slice (all, a tier, a reason, or a tier and a reason)."""

    open: int = 0
    reactivated: int = 0
    not_reactivated: int = 0

    def __add__(self, other: Counts) -> Counts:
        return Counts(
            self.open + other.open,
            self.reactivated + other.reactivated,
            self.not_reactivated + other.not_reactivated,
        )

    @property
    def warned(self) -> int:
        return self.open + self.judged

    @property
    def judged(self) -> int:
        """The sample size of the rate: warnings whose window has ended."""
        return self.reactivated + self.not_reactivated

    @property
    def rate(self) -> float | None:
        return self.reactivated / self.judged if self.judged else None


def wilson(x: int, n: int, z: float = Z95) -> tuple[float, float]:
    """Wilson score interval of the proportion x/n (n > 0)."""
    p = x / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z / denom * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    return max(0.0, centre - half), min(1.0, centre + half)


@dataclass(frozen=True)
class Uplift:
    """treated rate - holdout rate, with its 95% confidence interval."""

    difference: float
    low: float
    high: float


def uplift(treated: Counts, holdout: Counts, z: float = Z95) -> Uplift | None:
    """Difference of the two reactivation rates with Newcombe's hybrid score interval
    (Newcombe 1998, method 10: Wilson intervals of each rate, combined), which keeps its
    coverage for small groups and rates near 0 or 1 where the Wald interval does not.
    None when either group has no judged warning."""
    n1, n2 = treated.judged, holdout.judged
    if not n1 or not n2:
        return None
    p1, p2 = treated.reactivated / n1, holdout.reactivated / n2
    l1, u1 = wilson(treated.reactivated, n1, z)
    l2, u2 = wilson(holdout.reactivated, n2, z)
    d = p1 - p2
    low = d - math.sqrt((p1 - l1) ** 2 + (u2 - p2) ** 2)
    high = d + math.sqrt((u1 - p1) ** 2 + (p2 - l2) ** 2)
    return Uplift(d, max(-1.0, low), min(1.0, high))


Key = tuple[str, str, str]  # (group, tier, reason)


@dataclass(frozen=True)
class Comparison:
    """Treated against holdout in one slice; tier/reason None means every tier/reason."""

    tier: str | None
    reason: str | None
    treated: Counts
    holdout: Counts
    uplift: Uplift | None


def totals(cells: Iterable[tuple[str, str, str, str, int]]) -> dict[Key, Counts]:
    """Sum (group, tier, reason, outcome, count) rows into Counts per (group, tier, reason)."""
    out: dict[Key, Counts] = {}
    for group, tier, reason, outcome, n in cells:
        add = Counts(
            open=n if outcome == Outcome.OPEN else 0,
            reactivated=n if outcome == Outcome.REACTIVATED else 0,
            not_reactivated=n if outcome == Outcome.NOT_REACTIVATED else 0,
        )
        key = (group, tier, reason)
        out[key] = out.get(key, Counts()) + add
    return out


def totals_of_tallies(tallies: Iterable[Tally]) -> dict[Key, Counts]:
    """Totals over many users' tallies (e.g. a replay's final states)."""
    return totals(
        (g, t, r, o, n) for tally in tallies for (g, t, r, o), n in cell_counts(tally).items()
    )


def compare(
    by_cell: dict[Key, Counts], tier: str | None = None, reason: str | None = None
) -> Comparison:
    """Treated against holdout over the cells matching `tier` and `reason` (None: any)."""
    sums = {Group.TREATED: Counts(), Group.HOLDOUT: Counts()}
    for (group, t, r), counts in by_cell.items():
        if group in sums and (tier is None or t == tier) and (reason is None or r == reason):
            sums[group] = sums[group] + counts
    treated, holdout = sums[Group.TREATED], sums[Group.HOLDOUT]
    return Comparison(tier, reason, treated, holdout, uplift(treated, holdout))


def comparisons(by_cell: dict[Key, Counts], tiers: Sequence[str] = ()) -> list[Comparison]:
    """Overall, per tier, per reason, and per tier and reason (slices with warnings only);
    tiers in the given order first, then any others by name."""
    seen_tiers = {t for _, t, _ in by_cell}
    tier_order = [t for t in tiers if t in seen_tiers] + sorted(seen_tiers - set(tiers))
    reasons = sorted({r for _, _, r in by_cell})
    rows = [compare(by_cell)]
    rows += [compare(by_cell, tier=t) for t in tier_order]
    rows += [compare(by_cell, reason=r) for r in reasons]
    rows += [compare(by_cell, tier=t, reason=r) for t in tier_order for r in reasons]
    return [c for c in rows if c.treated.warned or c.holdout.warned]


def group_doc(counts: Counts) -> dict[str, int | float | None]:
    """One group's figures as the report, summary.json and the API show them."""
    return {
        "warned": counts.warned,
        "open": counts.open,
        "judged": counts.judged,
        "reactivated": counts.reactivated,
        "not_reactivated": counts.not_reactivated,
        "rate": counts.rate,
    }


def comparison_doc(c: Comparison) -> dict[str, object]:
    """A comparison as plain data: both groups, the uplift and its 95% interval (None when
    a group has nothing judged yet)."""
    u = c.uplift
    return {
        "tier": c.tier,
        "reason": c.reason,
        "treated": group_doc(c.treated),
        "holdout": group_doc(c.holdout),
        "uplift": None if u is None else u.difference,
        "ci_low": None if u is None else u.low,
        "ci_high": None if u is None else u.high,
    }
