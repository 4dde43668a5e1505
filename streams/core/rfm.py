"""RFM value segments: recency, frequency and monetary value of a user's purchases, scored 1-5,
and the eight classic segments from each score being high or low.

Within the policy's RFM window (`rfm.window_days`, 365 days ending today, UTC days):

- R = whole days since the last purchase (an event of a spend type);
- F = purchases (events of a spend type); M = their spend.

Each is scored 1-5 against four increasing boundaries (the policy's, or `pulse fit`'s
quintiles of a history): recency 5 at or below the first boundary, 1 above the last; frequency
and monetary 1 at or below the first, 5 above the last. A score at or above `rfm.high_score`
(3) is high; (R, F, M) high or low names one of eight segments (`rfm.segments`). A user with
no purchase within the window has no segment ("").

The state keeps the purchase days within the window (day, purchases, spend), so the figures
are exact whatever the arrival order. Without events, scores change only as recency grows past
a boundary and as purchase days leave the window: `next_change` finds the first such moment,
a checkpoint, so the segment moves on time without a scan.
"""

from __future__ import annotations

import math
from bisect import bisect_left

import msgspec

from streams.core.eventtime import DAY_MS
from streams.core.policy import Policy, RfmPolicy


# gc=False: frozen, numbers only, never part of a reference cycle (as windows.DayBucket).
class PurchaseDay(msgspec.Struct, frozen=True, gc=False, array_like=True):
    """One UTC day's purchases of one user."""

    day: int
    purchases: int
    spend_cents: int


class Assessment(msgspec.Struct, frozen=True, gc=False):
    """A user's RFM as of one day: figures, scores and segment ("" without a purchase)."""

    recency_days: int | None
    frequency: int
    monetary_cents: int
    scores: str  # "RFM", e.g. "534"; "" without a purchase
    segment: str


NONE = Assessment(None, 0, 0, "", "")


def add_purchase(
    days: tuple[PurchaseDay, ...], day: int, spend_cents: int
) -> tuple[PurchaseDay, ...]:
    """`days` (sorted, one entry per day) with one more purchase on `day`."""
    i = len(days)
    while i and days[i - 1].day > day:
        i -= 1
    if i and days[i - 1].day == day:
        p = days[i - 1]
        return (
            days[: i - 1]
            + (PurchaseDay(day, p.purchases + 1, p.spend_cents + spend_cents),)
            + days[i:]
        )
    return days[:i] + (PurchaseDay(day, 1, spend_cents),) + days[i:]


def prune(days: tuple[PurchaseDay, ...], today: int, window_days: int) -> tuple[PurchaseDay, ...]:
    """Drop the days that have left the window ending `today`."""
    first = today - window_days + 1
    if not days or days[0].day >= first:
        return days
    return tuple(p for p in days if p.day >= first)


def _higher(value: float, bounds: tuple[float, ...]) -> int:
    """1 + the boundaries `value` is above: 1..5 (the policy keeps them increasing)."""
    return 1 + bisect_left(bounds, value)


def _scores(
    recency_days: int, frequency: int, monetary_cents: int, rfm: RfmPolicy
) -> tuple[int, int, int]:
    """The R, F and M scores, 1-5 each."""
    r = 6 - _higher(recency_days, rfm.recency_days)
    f = _higher(frequency, rfm.frequency)
    m = _higher(monetary_cents / 100, rfm.monetary)
    return r, f, m


def scores_of(recency_days: int, frequency: int, monetary_cents: int, rfm: RfmPolicy) -> str:
    r, f, m = _scores(recency_days, frequency, monetary_cents, rfm)
    return f"{r}{f}{m}"


def segment_of(scores: str, rfm: RfmPolicy) -> str:
    """The segment of an "RFM" score string: each score high (h) or low (l)."""
    high = rfm.high_score
    r, f, m = (int(c) for c in scores)
    key = ("h" if r >= high else "l") + ("h" if f >= high else "l") + ("h" if m >= high else "l")
    return rfm.segments[key]


# The last RFM policy seen, with every score string and its segment at (r-1)*25 + (f-1)*5 +
# (m-1): `assess` runs at every evaluation of a buyer, and looks them up instead of making the
# string and parsing it back. Kept referenced, so its id is not reused (as policy.derived).
_names: tuple[RfmPolicy, tuple[tuple[str, str], ...]] | None = None


def _names_of(rfm: RfmPolicy) -> tuple[tuple[str, str], ...]:
    global _names
    if _names is None or _names[0] is not rfm:
        scores = [f"{r}{f}{m}" for r in range(1, 6) for f in range(1, 6) for m in range(1, 6)]
        _names = rfm, tuple((sc, segment_of(sc, rfm)) for sc in scores)
    return _names[1]


def assess(days: tuple[PurchaseDay, ...], today: int, policy: Policy) -> Assessment:
    """The RFM of the purchase days within the window ending `today` (days after it are
    not counted)."""
    rfm = policy.rfm
    first = today - rfm.window_days + 1
    freq = spend = 0
    last: int | None = None
    for p in days:
        if first <= p.day <= today:
            freq += p.purchases
            spend += p.spend_cents
            last = p.day
    if last is None:
        return NONE
    recency = today - last
    r, f, m = _scores(recency, freq, spend, rfm)
    scores, segment = _names_of(rfm)[(r - 1) * 25 + (f - 1) * 5 + (m - 1)]
    return Assessment(recency, freq, spend, scores, segment)


def next_change(
    days: tuple[PurchaseDay, ...], at: int, policy: Policy, now: Assessment | None = None
) -> int | None:
    """The first UTC midnight after `at` at which the scores change without new purchases
    (recency past a boundary, purchase days leaving the window); None if they never do.
    `now`: `assess(days, at // DAY_MS, policy)` when the caller has it."""
    today = at // DAY_MS
    if now is None:
        now = assess(days, today, policy)
    if not now.scores:
        return None
    rfm = policy.rfm
    assert now.recency_days is not None
    last_day = today - now.recency_days
    # Recency: the score falls the day after the days since the last purchase pass a boundary
    # (the policy keeps the boundaries increasing).
    bounds = rfm.recency_days
    i = bisect_left(bounds, now.recency_days)  # the first boundary not yet passed
    candidates: list[int] = []
    if i < len(bounds):  # the first whole number of days above it
        candidates.append(last_day + math.floor(bounds[i]) + 1)
    # Purchase days leaving the window, oldest first: the first that changes F or M (or, the
    # last one leaving, the segment itself).
    first = today - rfm.window_days + 1
    freq, spend = now.frequency, now.monetary_cents
    f_bounds, m_bounds = rfm.frequency, rfm.monetary
    f_now, m_now = bisect_left(f_bounds, freq), bisect_left(m_bounds, spend / 100)
    for p in days:
        if p.day < first or p.day > today:
            continue
        leaves = p.day + rfm.window_days
        if candidates and leaves >= candidates[0]:
            break
        freq -= p.purchases
        spend -= p.spend_cents
        if freq == 0:
            candidates.append(leaves)
            break
        if bisect_left(f_bounds, freq) != f_now or bisect_left(m_bounds, spend / 100) != m_now:
            candidates.append(leaves)
            break
    return min(candidates) * DAY_MS if candidates else None
