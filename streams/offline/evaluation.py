"""How right were the churn warnings, once the future is known? The out-of-sample judge.

The protocol an analyst would run: fit the churn model on the history up to a cut J
(`pulse fit --until J`), replay the whole history with it (`pulse replay --churn-model M
--judge-from J`), and judge only what happened from J on. Times are epoch ms, H = the horizon.

- A warning at t is *judged* when t >= J. It *came true* when the user had no activity in
  (t, t + H]. It is *censored* (counted, not judged) when t + H > end and the user had no
  activity in (t, end]: the history ends too soon to know.
- A *churn* is an activity at L followed by more than H of silence (next activity - L > H,
  or no next activity and end - L > H). It is judged when L >= J, so that its whole window
  (L, L + H] lies in the judged period; those with L < J are counted apart (left-censored).
  A silence still open at the end and not yet longer than H is not a churn.
- A churn is *caught* when a warning fell in (L, L + H]; of the first such warning w,
  lead = (L + H) - w (days before the horizon closes: the time left to act) and
  delay = w - L (days since the last activity).
- precision = came true / judged warnings; recall = caught / judged churns. Of the judged
  warnings, "came back within H" = 1 - precision, and "returned later" = the share whose user
  was active again at any time up to the end.
- Per tier: a warning under the tier it carried, a churn under the user's tier at L (from the
  tier-changed outputs).
- The silence rules: "silent N days" warns once, N days into every silence that lasts that
  long; judged by the same judge.
- ROC AUC (Mann-Whitney, ties count 1/2, positive = no activity within H), None when a class
  is empty: (a) of the warnings' risk_score over Pulse's judged warnings; with a churn model
  also (b) of `RiskModel.score` at the judged warnings of the shortest silence rule (moments
  no policy chose), and (c) at a snapshot S over every user active at or before S, labelled
  by no activity in (S, S + H]. S defaults to J, or to end - H when there is no J (the start
  of the history would score nobody); it is measured only when S + H <= end.
- Calibration (with a model): ten groups of equal size by the rank of the predicted P0, each
  with the mean prediction, the observed share and their gap (observed - predicted); at the
  snapshot, and over Pulse's judged warnings (predicted = risk_score, observed = came true).
- Precision-recall curve (with a model): the warning rule at thresholds 0.05 to 0.95 and the
  operating one, simulated from the activity timelines with `RiskModel.warning_time` (one
  warning per silence, kept if it falls before the next activity, or at or before the end),
  judged by the same judge.
- Stage quality: of the transitions into churned (and into dormant) at or after J, the share
  followed by any later activity. Returns are seen only until the end: a lower bound.

Activity after `end` is ignored. Everything is a pass over the sorted activity lists with
bisect: without a model CDNOW's 2,357 users take about 0.03 s, its 23,570 about 0.5 s. With a
model the cost is the model's calls: one `warning_time` per silence and threshold until a
threshold gives no warning, none for silences over before J, shared between users with the
same short history; with streams.offline.riskmodel.CoreRisk about 0.4 s and 3.5 s.
"""

from __future__ import annotations

import bisect
from collections import defaultdict
from collections.abc import Iterator, Mapping, Sequence
from statistics import median, quantiles
from typing import NamedTuple, Protocol, TypedDict

from streams.core.eventtime import DAY_MS, format_ts
from streams.core.lifecycle import Stage
from streams.core.outputs import Kind, Output

DEFAULT_SILENCE_RULES: tuple[float, ...] = (7, 14, 30, 60)
# The precision-recall curve's thresholds, 0.05 to 0.95; the operating one is added to them.
PR_THRESHOLDS: tuple[float, ...] = tuple(round(k * 0.05, 2) for k in range(1, 20))
CALIBRATION_GROUPS = 10


class RiskModel(Protocol):
    """The fitted churn model as the judge uses it: P0 = P(no activity within H | history).

    `days` are a user's distinct active UTC day numbers (epoch ms // DAY_MS), sorted and
    non-empty, up to and including the day of the moment asked about. Both methods must be
    pure functions of their arguments: the judge reuses answers for equal arguments.
    """

    threshold: float  # the operating threshold the replay warned at
    rule: str  # the operating rule in words (its moments, a late look)

    def score(self, days: Sequence[int], at: int) -> float:
        """P0 at epoch ms `at`."""
        ...

    def warning_time(self, days: Sequence[int], last_active: int, threshold: float) -> int | None:
        """When the rule with `threshold` would warn in the silence after the activity at
        `last_active` (whose day is days[-1]): an epoch ms after `last_active`, or None if
        never. The judge checks that it falls before the next activity.

        Must not decrease as `threshold` rises (true of "the first moment P0 reaches the
        threshold, not before a minimum silence"): the precision-recall curve stops asking
        about a silence at the first threshold that gives it no warning.
        """
        ...


class Spread(TypedDict):
    """Median and middle half of a list of days; all None when the list is empty."""

    median: float | None
    p25: float | None
    p75: float | None


LeadTime = Spread  # its name before lead and delay were told apart


class Score(TypedDict):
    """One rule's tally, over every tier or one tier."""

    warned: int  # warnings judged
    true_positives: int  # of those, came true
    censored: int  # warnings the history ends too soon to judge
    before_judge_from: int  # warnings before J, not judged
    churned: int  # churns judged
    caught: int
    precision: float | None  # None when nothing was judged
    recall: float | None
    came_back_within_horizon: float | None  # share of judged warnings; 1 - precision
    returned_later: float | None  # share of judged warnings whose user was active again by end
    lead_days: Spread  # (L + H) - w over the churns caught: days left before the horizon
    delay_days: Spread  # w - L over the churns caught: days since the last activity
    lead_time_days: Spread  # = delay_days, under the name summary.json readers knew it by


class Scores(TypedDict):
    overall: Score
    per_tier: dict[str, Score]


class RuleScores(Scores):
    rule: str  # e.g. "silent 14 days"
    silent_days: float


BaselineScores = RuleScores


class Auc(TypedDict):
    auc: float | None  # None when either class is empty
    positives: int  # no activity within H
    negatives: int


class AucFigures(TypedDict):
    at_warnings: Auc  # (a) the warnings' risk_score, over Pulse's judged warnings
    at_silence: Auc | None  # (b) RiskModel.score at `silence_rule`'s judged warnings
    silence_rule: str | None
    at_snapshot: Auc | None  # (c) RiskModel.score of every user at the snapshot


class Decile(TypedDict):
    group: int  # 1 = the lowest predictions
    n: int
    predicted: float  # mean predicted P0
    observed: float  # share with no activity within H
    gap: float  # observed - predicted


class Calibration(TypedDict):
    n: int
    groups: list[Decile]
    max_abs_gap: float | None  # None when n = 0


class Snapshot(TypedDict):
    at: str  # RFC 3339
    users: int  # active at or before it
    calibration: Calibration


class PrPoint(TypedDict):
    threshold: float
    warnings: int  # judged
    precision: float | None
    recall: float | None
    lead_median_days: float | None
    delay_median_days: float | None
    operating: bool  # the threshold the replay used


class PrCurve(TypedDict):
    operating_threshold: float
    operating_rule: str
    churns: int  # judged churns, the recall's denominator at every point
    points: list[PrPoint]  # by threshold, ascending


class StageReturns(TypedDict):
    transitions: int  # into the stage, at or after J
    returned: int  # followed by any activity up to the end
    share: float | None


class StageQuality(TypedDict):
    churned: StageReturns
    dormant: StageReturns


class Censoring(TypedDict):
    warnings_censored: int  # Pulse's: the history ends less than H after them, user not back
    warnings_before_judge_from: int  # Pulse's, before J
    churns_before_judge_from: int  # churns with L < J (left-censored), left out
    silences_open_at_end: int  # last activities less than H before the end: churn unknown


class Evaluation(TypedDict):
    """What `evaluate` returns; plain data (summary.json holds it as is)."""

    horizon_days: float
    judge_from: str | None  # RFC 3339; None: the whole history is judged
    end: str
    pulse: Scores
    rules: list[RuleScores]  # one per silence rule, in the order given
    baseline: RuleScores  # the first of `rules`, where readers of one baseline look for it
    censoring: Censoring
    stage_quality: StageQuality
    auc: AucFigures
    snapshot: Snapshot | None  # None without a model, or when S + H > end
    calibration_at_warnings: Calibration | None  # None without a model
    pr_curve: PrCurve | None  # None without a model
    missing: dict[str, str]  # section ("snapshot", "calibration", "pr_curve") -> why it is None


# -- figures -------------------------------------------------------------------------------


def _ratio(part: int, whole: int) -> float | None:
    return round(part / whole, 4) if whole else None


def _spread(days: list[float]) -> Spread:
    if not days:
        return {"median": None, "p25": None, "p75": None}
    if len(days) == 1:
        v = round(days[0], 3)
        return {"median": v, "p25": v, "p75": v}
    q = quantiles(days, n=4, method="inclusive")
    return {"median": round(median(days), 3), "p25": round(q[0], 3), "p75": round(q[2], 3)}


def roc_auc(scores: Sequence[float], positive: Sequence[bool]) -> Auc:
    """ROC AUC by the Mann-Whitney rank sum: the chance a random positive scores above a random
    negative, ties counting 1/2. `auc` is None when either class is empty.

    Raises ValueError when the two sequences differ in length.
    """
    if len(scores) != len(positive):
        raise ValueError(f"{len(scores)} scores but {len(positive)} labels")
    n = len(scores)
    pos = sum(1 for p in positive if p)
    neg = n - pos
    if not pos or not neg:
        return {"auc": None, "positives": pos, "negatives": neg}
    order = sorted(range(n), key=scores.__getitem__)
    rank_sum = 0.0
    i = 0
    while i < n:
        j = i
        while j + 1 < n and scores[order[j + 1]] == scores[order[i]]:
            j += 1
        midrank = (i + j) / 2 + 1  # ranks from 1; a run of ties shares its middle rank
        rank_sum += midrank * sum(1 for k in order[i : j + 1] if positive[k])
        i = j + 1
    auc = (rank_sum - pos * (pos + 1) / 2) / (pos * neg)
    return {"auc": round(auc, 4), "positives": pos, "negatives": neg}


def calibration(
    predicted: Sequence[float], observed: Sequence[bool], groups: int = CALIBRATION_GROUPS
) -> Calibration:
    """Predictions against outcomes in `groups` groups of equal size by the rank of the
    prediction (sizes differ by at most one; fewer groups when there are fewer items).

    Raises ValueError when the two sequences differ in length.
    """
    if len(predicted) != len(observed):
        raise ValueError(f"{len(predicted)} predictions but {len(observed)} outcomes")
    n = len(predicted)
    order = sorted(range(n), key=predicted.__getitem__)
    rows: list[Decile] = []
    worst: float | None = None
    for g in range(groups):
        members = order[g * n // groups : (g + 1) * n // groups]
        if not members:
            continue
        p = sum(predicted[k] for k in members) / len(members)
        o = sum(1 for k in members if observed[k]) / len(members)
        worst = abs(o - p) if worst is None else max(worst, abs(o - p))
        rows.append(
            {
                "group": g + 1,
                "n": len(members),
                "predicted": round(p, 4),
                "observed": round(o, 4),
                "gap": round(o - p, 4),
            }
        )
    return {"n": n, "groups": rows, "max_abs_gap": None if worst is None else round(worst, 4)}


# -- the judge -----------------------------------------------------------------------------


class _Tiers:
    """Each user's tier over time, from the tier-changed outputs."""

    def __init__(self, outputs: Sequence[Output], lowest: str) -> None:
        self.lowest = lowest
        self.times: dict[str, list[int]] = defaultdict(list)
        self.names: dict[str, list[str]] = defaultdict(list)
        for o in sorted((o for o in outputs if o.kind == Kind.TIER), key=lambda o: o.ts):
            self.times[o.user_id].append(o.ts)
            self.names[o.user_id].append(str(o.payload["to_tier"]))

    def at(self, user: str, ts: int) -> str:
        i = bisect.bisect_right(self.times.get(user, []), ts)
        return self.names[user][i - 1] if i else self.lowest


class _Tally:
    def __init__(self) -> None:
        self.warned = self.true_positives = self.returned = 0
        self.censored = self.early = self.churned = self.caught = 0
        self.lead: list[float] = []
        self.delay: list[float] = []

    def result(self) -> Score:
        came_back = self.warned - self.true_positives
        return {
            "warned": self.warned,
            "true_positives": self.true_positives,
            "censored": self.censored,
            "before_judge_from": self.early,
            "churned": self.churned,
            "caught": self.caught,
            "precision": _ratio(self.true_positives, self.warned),
            "recall": _ratio(self.caught, self.churned),
            "came_back_within_horizon": _ratio(came_back, self.warned),
            "returned_later": _ratio(self.returned, self.warned),
            "lead_days": _spread(self.lead),
            "delay_days": _spread(self.delay),
            "lead_time_days": _spread(self.delay),
        }


# A rule's warnings: user -> (time, tier) pairs, any order.
Warnings = Mapping[str, Sequence[tuple[int, str]]]


class _Judge:
    """The activity timelines cut at `end`, their judged churns, and the judging of warnings."""

    def __init__(
        self,
        activity: Mapping[str, Sequence[int]],
        end: int,
        horizon: int,
        judge_from: int | None,
        tiers: _Tiers,
    ) -> None:
        self.end, self.horizon, self.judge_from = end, horizon, judge_from
        self.times: dict[str, Sequence[int]] = {}
        # user -> the judged churns' (L, tier at L), L ascending
        self.churns: dict[str, list[tuple[int, str]]] = {}
        self.churns_before = self.open_at_end = 0
        for user, all_times in activity.items():
            times = all_times
            if times and times[-1] > end:
                times = times[: bisect.bisect_right(times, end)]
            self.times[user] = times
            found: list[tuple[int, str]] = []
            for i, last in enumerate(times):
                if i + 1 < len(times):
                    if times[i + 1] - last <= horizon:
                        continue
                elif end - last <= horizon:
                    self.open_at_end += 1
                    continue
                if judge_from is not None and last < judge_from:
                    self.churns_before += 1
                    continue
                found.append((last, tiers.at(user, last)))
            if found:
                self.churns[user] = found

    @property
    def churn_count(self) -> int:
        return sum(len(c) for c in self.churns.values())

    def outcome(self, user: str, t: int) -> tuple[bool, bool] | None:
        """(came true, active again by the end) of a warning at t; None when censored."""
        times = self.times.get(user, ())
        i = bisect.bisect_right(times, t)
        return self.outcome_before(t, times[i] if i < len(times) else None)

    def outcome_before(self, t: int, nxt: int | None) -> tuple[bool, bool] | None:
        """`outcome` of a warning at t whose user is next active at nxt (None: never again)."""
        if nxt is None:
            return None if t + self.horizon > self.end else (True, False)
        return nxt - t > self.horizon, True

    def score(self, warnings: Warnings, *, per_tier: bool = True) -> Scores:
        overall = _Tally()
        tiers: dict[str, _Tally] = defaultdict(_Tally)
        horizon, start = self.horizon, self.judge_from
        for user, ws in warnings.items():
            for t, tier in ws:
                tallies = (overall, tiers[tier]) if per_tier else (overall,)
                if start is not None and t < start:
                    for tally in tallies:
                        tally.early += 1
                    continue
                result = self.outcome(user, t)
                for tally in tallies:
                    if result is None:
                        tally.censored += 1
                        continue
                    tally.warned += 1
                    tally.true_positives += result[0]
                    tally.returned += result[1]
        for user, churns in self.churns.items():
            wts = sorted(t for t, _ in warnings.get(user, ()))
            for last, tier in churns:
                tallies = (overall, tiers[tier]) if per_tier else (overall,)
                j = bisect.bisect_right(wts, last)
                caught = j < len(wts) and wts[j] <= last + horizon
                for tally in tallies:
                    tally.churned += 1
                    if caught:
                        tally.caught += 1
                        tally.lead.append((last + horizon - wts[j]) / DAY_MS)
                        tally.delay.append((wts[j] - last) / DAY_MS)
        return {
            "overall": overall.result(),
            "per_tier": {t: v.result() for t, v in sorted(tiers.items())},
        }


def silence_warnings(
    activity: Mapping[str, Sequence[int]], end: int, silent_days: float, tiers: _Tiers
) -> dict[str, list[tuple[int, str]]]:
    """The rule "silent N days": a warning N days into every silence that lasts that long
    (before the next activity, or up to the end), under the user's tier at that time."""
    gap = int(silent_days * DAY_MS)
    out: dict[str, list[tuple[int, str]]] = {}
    for user, times in activity.items():
        ws = []
        for i, last in enumerate(times):
            at = last + gap
            if (i + 1 < len(times) and times[i + 1] > at) or (i + 1 == len(times) and at <= end):
                ws.append((at, tiers.at(user, at)))
        out[user] = ws
    return out


def _rule_name(days: float) -> str:
    return f"silent {days:g} days"


# -- with a churn model --------------------------------------------------------------------


class _Days:
    """A user's distinct active days, and how many of them each activity closes."""

    def __init__(self, times: Sequence[int]) -> None:
        self.days: list[int] = []
        self.upto: list[int] = []  # upto[i] = distinct days up to and including times[i]
        for t in times:
            d = t // DAY_MS
            if not self.days or self.days[-1] != d:
                self.days.append(d)
            self.upto.append(len(self.days))

    def through(self, i: int) -> list[int]:
        """The active days up to and including activity i."""
        return self.days[: self.upto[i]]


class Silence(NamedTuple):
    """A silence that can hold a judged warning: after activity `last` (epoch ms) of `user`,
    whose active days through it are `days`, until `nxt` (None: no activity by the end)."""

    user: str
    days: list[int]
    last: int
    nxt: int | None
    churn: bool  # a judged churn starts at `last`


def _silences(judge: _Judge, days: Mapping[str, _Days]) -> Iterator[Silence]:
    start = judge.judge_from
    for user, times in judge.times.items():
        churns = {last for last, _ in judge.churns.get(user, ())}
        n = len(times)
        for i, last in enumerate(times):
            nxt = times[i + 1] if i + 1 < n else None
            if nxt is not None and (nxt <= last or (start is not None and nxt <= start)):
                # No silence (two activities at one moment), or one over before J: any
                # warning in it is not judged, so the model need not be asked.
                continue
            yield Silence(user, days[user].through(i), last, nxt, last in churns)


class Silences(NamedTuple):
    """The silences of a history as `evaluate` judges warnings in them."""

    end: int
    horizon: int  # ms
    judge_from: int | None
    churns: int  # the judged churns (recall's denominator)
    silences: list[Silence]


def judged_silences(
    activity: Mapping[str, Sequence[int]],
    end: int,
    *,
    horizon_days: float,
    judge_from: int | None,
) -> Silences:
    """Every silence of `activity` (sorted epoch-ms times per user) that can hold a warning
    judged as `evaluate` judges it, for judging other warning rules the same way. A warning at
    t in a silence fires when t < nxt (or t <= end when there is no next activity); it is
    judged when t >= judge_from and not censored (no next activity and t + horizon > end),
    came true when there is no next activity or nxt - t > horizon, and catches the silence's
    churn when t <= last + horizon (its lead: last + horizon - t)."""
    if horizon_days <= 0:
        raise ValueError(f"horizon_days must be positive, got {horizon_days}")
    judge = _Judge(activity, end, int(horizon_days * DAY_MS), judge_from, _Tiers([], ""))
    days = {user: _Days(times) for user, times in judge.times.items()}
    return Silences(end, judge.horizon, judge_from, judge.churn_count, list(_silences(judge, days)))


def _rule_points(
    judge: _Judge, days: Mapping[str, _Days], risk: RiskModel, thresholds: Sequence[float]
) -> list[PrPoint]:
    thresholds = sorted(set(thresholds))
    tallies = [_Tally() for _ in thresholds]
    end, horizon, start = judge.end, judge.horizon, judge.judge_from
    # The model's answers for short histories, by (days, last activity): those repeat across
    # users (everyone who bought once on the same day, in day-stamped data such as CDNOW,
    # where this halves the model's calls); long histories do not, and hashing them would
    # cost more than it saves. Each list holds the warning times of the thresholds in order,
    # as far as some silence needed them.
    known: dict[tuple[tuple[int, ...], int], list[int | None]] = {}
    for user, prefix, last, nxt, churn in _silences(judge, days):
        answers = known.setdefault((tuple(prefix), last), []) if len(prefix) <= 3 else []
        for k, (th, tally) in enumerate(zip(thresholds, tallies, strict=True)):
            if k < len(answers):
                w = answers[k]
            else:
                w = risk.warning_time(prefix, last, th)
                answers.append(w)
            if w is None or (w >= nxt if nxt is not None else w > end):
                break  # and no higher threshold warns in this silence either
            if w <= last:
                raise ValueError(
                    f"RiskModel.warning_time gave {w} for the silence after {last} "
                    f"(user {user!r}, threshold {th}): a warning must come after it"
                )
            if start is not None and w < start:
                continue
            # The judge's rules (see _Judge.score), with the next activity known.
            result = judge.outcome_before(w, nxt)
            if result is not None:
                tally.warned += 1
                tally.true_positives += result[0]
            if churn and w <= last + horizon:
                tally.caught += 1
                tally.lead.append((last + horizon - w) / DAY_MS)
                tally.delay.append((w - last) / DAY_MS)
    points: list[PrPoint] = []
    for th, tally in zip(thresholds, tallies, strict=True):
        tally.churned = judge.churn_count
        s = tally.result()
        points.append(
            {
                "threshold": th,
                "warnings": s["warned"],
                "precision": s["precision"],
                "recall": s["recall"],
                "lead_median_days": s["lead_days"]["median"],
                "delay_median_days": s["delay_days"]["median"],
                "operating": th == risk.threshold,
            }
        )
    return points


def warning_rule_points(
    activity: Mapping[str, Sequence[int]],
    end: int,
    *,
    horizon_days: float,
    judge_from: int | None,
    risk: RiskModel,
    thresholds: Sequence[float],
) -> list[PrPoint]:
    """The precision-recall points of the rule "warn when P0 reaches the threshold", one per
    threshold (ascending), simulated from `activity` and judged as `evaluate` judges.

    Raises ValueError when horizon_days is not positive or the model's warning_time gives a
    time not after the silence began.
    """
    if horizon_days <= 0:
        raise ValueError(f"horizon_days must be positive, got {horizon_days}")
    judge = _Judge(activity, end, int(horizon_days * DAY_MS), judge_from, _Tiers([], ""))
    days = {user: _Days(times) for user, times in judge.times.items()}
    return _rule_points(judge, days, risk, thresholds)


def _at_silence(
    judge: _Judge, days: Mapping[str, _Days], risk: RiskModel, silent_days: float
) -> Auc:
    gap = int(silent_days * DAY_MS)
    scores: list[float] = []
    labels: list[bool] = []
    for user, times in judge.times.items():
        for i, last in enumerate(times):
            at = last + gap
            inside = times[i + 1] > at if i + 1 < len(times) else at <= judge.end
            if not inside or (judge.judge_from is not None and at < judge.judge_from):
                continue
            result = judge.outcome(user, at)
            if result is not None:
                scores.append(risk.score(days[user].through(i), at))
                labels.append(result[0])
    return roc_auc(scores, labels)


def _snapshot(
    judge: _Judge, days: Mapping[str, _Days], risk: RiskModel, at: int
) -> tuple[Snapshot, Auc]:
    scores: list[float] = []
    labels: list[bool] = []
    for user, times in judge.times.items():
        k = bisect.bisect_right(times, at)
        if not k:
            continue
        scores.append(risk.score(days[user].through(k - 1), at))
        labels.append(k == len(times) or times[k] > at + judge.horizon)
    snap: Snapshot = {
        "at": format_ts(at),
        "users": len(scores),
        "calibration": calibration(scores, labels),
    }
    return snap, roc_auc(scores, labels)


def _stage_returns(judge: _Judge, outputs: Sequence[Output], stage: str) -> StageReturns:
    moved = returned = 0
    for o in outputs:
        if o.kind != Kind.LIFECYCLE or o.payload.get("to_stage") != stage:
            continue
        if judge.judge_from is not None and o.ts < judge.judge_from:
            continue
        moved += 1
        times = judge.times.get(o.user_id, ())
        returned += bisect.bisect_right(times, o.ts) < len(times)
    return {"transitions": moved, "returned": returned, "share": _ratio(returned, moved)}


# -- the whole evaluation ------------------------------------------------------------------


def evaluate(
    outputs: Sequence[Output],
    activity: Mapping[str, Sequence[int]],
    end: int,
    *,
    horizon_days: float,
    lowest_tier: str,
    judge_from: int | None = None,
    silence_rules: Sequence[float] = DEFAULT_SILENCE_RULES,
    risk: RiskModel | None = None,
    snapshot_at: int | None = None,
    baseline_days: float | None = None,
) -> Evaluation:
    """Judge Pulse's warnings and the silence rules against what happened (module docstring).

    `activity` is each user's sorted activity times; `end` the end of the history (activity
    after it is ignored); `judge_from` J, None to judge the whole history; `risk` the churn
    model the replay used, None when it had none (the snapshot, calibration and
    precision-recall figures are then None, and `missing` says why); `snapshot_at` S, by
    default J (or end - H without a J); `baseline_days`, when given, the rule put first
    (ahead of the silence rules, so it is `baseline`).

    Raises ValueError when horizon_days or a silence rule is not positive, when there is no
    silence rule, or when the model's warning_time gives a time not after the silence began.
    """
    if horizon_days <= 0:
        raise ValueError(f"horizon_days must be positive, got {horizon_days}")
    if baseline_days is not None:
        silence_rules = [baseline_days, *(n for n in silence_rules if n != baseline_days)]
    if not silence_rules or any(n <= 0 for n in silence_rules):
        raise ValueError(f"silence_rules must be positive numbers of days, got {silence_rules}")
    horizon = int(horizon_days * DAY_MS)
    tiers = _Tiers(outputs, lowest_tier)
    judge = _Judge(activity, end, horizon, judge_from, tiers)

    pulse: dict[str, list[tuple[int, str]]] = defaultdict(list)
    risk_scores: list[float] = []
    came_true: list[bool] = []
    for o in outputs:
        if o.kind != Kind.WARNING:
            continue
        pulse[o.user_id].append((o.ts, str(o.payload.get("tier") or lowest_tier)))
        if judge_from is not None and o.ts < judge_from:
            continue
        result = judge.outcome(o.user_id, o.ts)
        if result is not None:
            risk_scores.append(float(o.payload["risk_score"]))
            came_true.append(result[0])
    pulse_scores = judge.score(pulse)
    rules: list[RuleScores] = []
    for n in silence_rules:
        scores = judge.score(silence_warnings(judge.times, end, n, tiers))
        rules.append(
            {
                "rule": _rule_name(n),
                "silent_days": n,
                "overall": scores["overall"],
                "per_tier": scores["per_tier"],
            }
        )
    overall = pulse_scores["overall"]

    shortest = min(silence_rules)
    auc: AucFigures = {
        "at_warnings": roc_auc(risk_scores, came_true),
        "at_silence": None,
        "silence_rule": None,
        "at_snapshot": None,
    }
    snapshot: Snapshot | None = None
    calibration_at_warnings: Calibration | None = None
    pr_curve: PrCurve | None = None
    missing: dict[str, str] = {}
    if risk is None:
        why = "no churn model was loaded (replay with --churn-model)"
        missing = {"snapshot": why, "calibration": why, "pr_curve": why}
    else:
        days = {user: _Days(times) for user, times in judge.times.items()}
        auc["at_silence"] = _at_silence(judge, days, risk, shortest)
        auc["silence_rule"] = _rule_name(shortest)
        s = snapshot_at if snapshot_at is not None else judge_from
        if s is None:
            s = end - horizon
        if s + horizon <= end:
            snapshot, auc["at_snapshot"] = _snapshot(judge, days, risk, s)
        else:
            missing["snapshot"] = (
                f"the snapshot {format_ts(s)} is less than {horizon_days:g} days before the "
                "end of the history: its outcomes are not known"
            )
        calibration_at_warnings = calibration(risk_scores, came_true)
        pr_curve = {
            "operating_threshold": risk.threshold,
            "operating_rule": risk.rule,
            "churns": judge.churn_count,
            "points": _rule_points(judge, days, risk, [*PR_THRESHOLDS, risk.threshold]),
        }

    return {
        "horizon_days": horizon_days,
        "judge_from": format_ts(judge_from) if judge_from is not None else None,
        "end": format_ts(end),
        "pulse": pulse_scores,
        "rules": rules,
        "baseline": rules[0],
        "censoring": {
            "warnings_censored": overall["censored"],
            "warnings_before_judge_from": overall["before_judge_from"],
            "churns_before_judge_from": judge.churns_before,
            "silences_open_at_end": judge.open_at_end,
        },
        "stage_quality": {
            "churned": _stage_returns(judge, outputs, Stage.CHURNED),
            "dormant": _stage_returns(judge, outputs, Stage.DORMANT),
        },
        "auc": auc,
        "snapshot": snapshot,
        "calibration_at_warnings": calibration_at_warnings,
        "pr_curve": pr_curve,
        "missing": missing,
    }
