"""How right were the churn warnings, once the future is known? Pulse against a baseline rule.

Definitions (times in ms, H = the churn horizon, by default the policy's churned_after_days):
- A warning at t *came true* when the user had no activity in (t, t + H]. It is *censored*
  (left out) when the history ends before t + H and the user was not back by then.
- A *churn* is a last activity L followed by H of silence (before the next activity, or before
  the end of the history). It was *caught* when a warning fell in (L, L + H].
- precision = warnings that came true / warnings judged; recall = churns caught / churns.
- lead time = days from the churned user's last activity L to the first warning that caught
  it (earlier is better: more time to win the user back).
- The baseline warns every user N days into any silence ("silent N days").
Per tier: a warning counts under the tier it carried (the user's tier at that time), a churn
under the user's tier at its last activity.
"""

from __future__ import annotations

import bisect
from collections import defaultdict
from statistics import median, quantiles
from typing import Any

from streams.core.eventtime import DAY_MS
from streams.core.outputs import Kind, Output


def _lead(days: list[float]) -> dict[str, float | None]:
    if not days:
        return {"median": None, "p25": None, "p75": None}
    if len(days) == 1:
        return {"median": days[0], "p25": days[0], "p75": days[0]}
    q = quantiles(days, n=4, method="inclusive")
    return {"median": round(median(days), 3), "p25": round(q[0], 3), "p75": round(q[2], 3)}


class _Tally:
    def __init__(self) -> None:
        self.warned = self.true_positives = self.churned = self.caught = 0
        self.lead: list[float] = []

    def result(self) -> dict[str, Any]:
        return {
            "warned": self.warned,
            "churned": self.churned,
            "true_positives": self.true_positives,
            "caught": self.caught,
            "precision": round(self.true_positives / self.warned, 4) if self.warned else None,
            "recall": round(self.caught / self.churned, 4) if self.churned else None,
            "lead_time_days": _lead(self.lead),
        }


class _Tiers:
    """Each user's tier over time, from the tier-changed outputs."""

    def __init__(self, outputs: list[Output], lowest: str) -> None:
        self.lowest = lowest
        self.times: dict[str, list[int]] = defaultdict(list)
        self.names: dict[str, list[str]] = defaultdict(list)
        for o in sorted((o for o in outputs if o.kind == Kind.TIER), key=lambda o: o.ts):
            self.times[o.user_id].append(o.ts)
            self.names[o.user_id].append(str(o.payload["to_tier"]))

    def at(self, user: str, ts: int) -> str:
        i = bisect.bisect_right(self.times.get(user, []), ts)
        return self.names[user][i - 1] if i else self.lowest


def _judge(
    warnings: dict[str, list[tuple[int, str]]],
    activity: dict[str, list[int]],
    end: int,
    horizon: int,
    tiers: _Tiers,
) -> dict[str, Any]:
    overall = _Tally()
    per_tier: dict[str, _Tally] = defaultdict(_Tally)
    for user, times in activity.items():
        ws = sorted(warnings.get(user, []))
        wts = [t for t, _ in ws]
        # warnings
        for t, tier in ws:
            i = bisect.bisect_right(times, t)
            nxt = times[i] if i < len(times) else None
            if nxt is None and t + horizon > end:
                continue  # censored: the history ends too soon to know
            came_true = nxt is None or nxt - t > horizon
            for tally in (overall, per_tier[tier]):
                tally.warned += 1
                tally.true_positives += came_true
        # churns
        for i, last in enumerate(times):
            nxt = times[i + 1] if i + 1 < len(times) else None
            silent_until = nxt if nxt is not None else end
            if silent_until - last <= horizon:
                continue
            tier = tiers.at(user, last)
            j = bisect.bisect_right(wts, last)
            caught = j < len(wts) and wts[j] <= last + horizon
            for tally in (overall, per_tier[tier]):
                tally.churned += 1
                if caught:
                    tally.caught += 1
                    tally.lead.append((wts[j] - last) / DAY_MS)
    return {
        "overall": overall.result(),
        "per_tier": {t: v.result() for t, v in sorted(per_tier.items())},
    }


def baseline_warnings(
    activity: dict[str, list[int]], end: int, silent_days: float, tiers: _Tiers
) -> dict[str, list[tuple[int, str]]]:
    """The fixed rule: a warning N days into every silence that lasts that long."""
    gap = int(silent_days * DAY_MS)
    out: dict[str, list[tuple[int, str]]] = {}
    for user, times in activity.items():
        ws = []
        for i, last in enumerate(times):
            nxt = times[i + 1] if i + 1 < len(times) else None
            at = last + gap
            if (nxt is None and at <= end) or (nxt is not None and nxt > at):
                ws.append((at, tiers.at(user, at)))
        out[user] = ws
    return out


def evaluate(
    outputs: list[Output],
    activity: dict[str, list[int]],
    end: int,
    *,
    horizon_days: float,
    baseline_days: float,
    lowest_tier: str,
) -> dict[str, Any]:
    """Precision, recall and lead time of Pulse's warnings and of the baseline rule."""
    horizon = int(horizon_days * DAY_MS)
    tiers = _Tiers(outputs, lowest_tier)
    pulse: dict[str, list[tuple[int, str]]] = defaultdict(list)
    for o in outputs:
        if o.kind == Kind.WARNING:
            pulse[o.user_id].append((o.ts, str(o.payload.get("tier") or lowest_tier)))
    base = baseline_warnings(activity, end, baseline_days, tiers)
    return {
        "horizon_days": horizon_days,
        "pulse": _judge(pulse, activity, end, horizon, tiers),
        "baseline": {
            "rule": f"silent {baseline_days:g} days",
            **_judge(base, activity, end, horizon, tiers),
        },
    }
