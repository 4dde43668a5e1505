"""The out-of-sample judge: hand-made timelines with known answers, AUC, calibration, PR curve."""

from __future__ import annotations

import math
from collections.abc import Sequence
from itertools import product

import pytest
from hypothesis import given
from hypothesis import strategies as st

from streams.core.eventtime import DAY_MS
from streams.core.lifecycle import Stage
from streams.core.outputs import Output, churn_warning, lifecycle_changed, tier_changed
from streams.offline.evaluation import (
    PR_THRESHOLDS,
    Evaluation,
    calibration,
    evaluate,
    roc_auc,
    warning_rule_points,
)

from .pulse_testkit import PROPERTY

D = DAY_MS
H = 10  # days: small numbers keep the hand-worked answers readable


def warn(user: str, day: float, tier: str = "bronze", risk: float = 0.5) -> Output:
    return churn_warning(user, int(day * D), "silence_exceeds_normal", risk, "active", tier, {})


def days(*ds: float) -> list[int]:
    return [int(d * D) for d in ds]


def run(
    outputs: Sequence[Output],
    activity: dict[str, list[int]],
    end_day: float = 100,
    *,
    judge_from_day: float | None = None,
    horizon: float = H,
    rules: Sequence[float] = (7,),
    risk: SilenceModel | None = None,
    snapshot_day: float | None = None,
) -> Evaluation:
    return evaluate(
        outputs,
        activity,
        int(end_day * D),
        horizon_days=horizon,
        lowest_tier="bronze",
        judge_from=None if judge_from_day is None else int(judge_from_day * D),
        silence_rules=rules,
        risk=risk,
        snapshot_at=None if snapshot_day is None else int(snapshot_day * D),
    )


class SilenceModel:
    """A fake churn model whose P0 is the silence in days over 20 (capped at 1): the rule at
    threshold th warns th * 20 days into a silence, i.e. it is the rule "silent th*20 days"."""

    def __init__(self, threshold: float = 0.35) -> None:
        self.threshold = threshold
        self.rule = f"silent {threshold * 20:g} days"
        self.calls = 0

    def score(self, days: Sequence[int], at: int) -> float:
        assert list(days) == sorted(set(days)) and days and days[-1] <= at // D
        return min(1.0, (at // D - days[-1]) / 20)

    def warning_time(self, days: Sequence[int], last_active: int, threshold: float) -> int | None:
        self.calls += 1
        assert days[-1] == last_active // D
        return last_active + round(threshold * 20 * D)


# -- the judge: warnings ---------------------------------------------------------------------

# activity (days), warning day, end day, judged from (day) ->
# (warned, came true, censored, before J, returned later)
WARNING_CASES = {
    "no activity after, horizon inside the history: came true": (
        [0], 5, 100, None, (1, 1, 0, 0, 0),
    ),
    "back 7 days later: did not come true, returned": ([0, 12], 5, 100, None, (1, 0, 0, 0, 1)),
    "back exactly H later counts as back": ([0, 15], 5, 100, None, (1, 0, 0, 0, 1)),
    "back after H: came true, and returned later": ([0, 30], 5, 100, None, (1, 1, 0, 0, 1)),
    "horizon past the end, not back: censored": ([0], 95, 100, None, (0, 0, 1, 0, 0)),
    "horizon past the end but back before it: judged, wrong": (
        [0, 98], 95, 100, None, (1, 0, 0, 0, 1),
    ),
    "activity after the end is not seen: censored": ([0, 101], 95, 100, None, (0, 0, 1, 0, 0)),
    "before the judged period: not judged": ([0], 5, 100, 6, (0, 0, 0, 1, 0)),
    "at the start of the judged period: judged": ([0], 6, 100, 6, (1, 1, 0, 0, 0)),
}  # fmt: skip


@pytest.mark.parametrize("case", WARNING_CASES, ids=list(WARNING_CASES))
def test_a_warning_is_judged_censored_or_left_out_as_defined(case: str) -> None:
    activity, at, end, start, expected = WARNING_CASES[case]
    o = run([warn("u", at)], {"u": days(*activity)}, end, judge_from_day=start)["pulse"]["overall"]
    returned = round((o["returned_later"] or 0) * o["warned"])
    got = (o["warned"], o["true_positives"], o["censored"], o["before_judge_from"], returned)
    assert got == expected


def test_came_back_shares_are_of_the_judged_warnings() -> None:
    activity = {
        "gone": days(0),  # warned day 5: came true, never back
        "late": days(0, 40),  # warned day 5: came true, back on day 40
        "soon": days(0, 8),  # warned day 5: back within H
        "again": days(0, 9),  # warned day 5: back within H
        "end": days(0),  # warned day 95: censored, not in the shares
    }
    outputs = [warn(u, 5) for u in ("gone", "late", "soon", "again")] + [warn("end", 95)]
    o = run(outputs, activity)["pulse"]["overall"]
    assert (o["warned"], o["censored"], o["precision"]) == (4, 1, 0.5)
    assert o["came_back_within_horizon"] == 0.5
    assert o["returned_later"] == 0.75


# -- the judge: churns -----------------------------------------------------------------------

# activity (days), end day, judged from -> (judged churns, churns before J, silences open at end)
CHURN_CASES = {
    "two silences longer than H": ([0, 5, 20], 100, None, (2, 0, 0)),
    "a gap of exactly H is no churn": ([0, 10], 100, None, (1, 0, 0)),
    "a silence shorter than H at the end is open": ([0, 95], 100, None, (1, 0, 1)),
    "exactly H before the end is still open": ([0, 90], 100, None, (1, 0, 1)),
    "churns that began before J are left-censored": ([0, 40, 60], 100, 50, (1, 2, 0)),
    "a churn that begins at J is judged": ([50], 100, 50, (1, 0, 0)),
}


@pytest.mark.parametrize("case", CHURN_CASES, ids=list(CHURN_CASES))
def test_churns_are_counted_judged_or_censored_as_defined(case: str) -> None:
    activity, end, start, expected = CHURN_CASES[case]
    result = run([], {"u": days(*activity)}, end, judge_from_day=start)
    c = result["censoring"]
    got = (result["pulse"]["overall"]["churned"], c["churns_before_judge_from"])
    assert (*got, c["silences_open_at_end"]) == expected


# warning day after a last activity on day 0 (end 100, H 10) -> (caught, lead, delay)
CATCH_CASES = {
    "3 days in": (3, (1, 7.0, 3.0)),
    "on the last day of the horizon": (10, (1, 0.0, 10.0)),
    "a day after the horizon closed": (11, (0, None, None)),
    "at the last activity itself": (0, (0, None, None)),
}


@pytest.mark.parametrize("case", CATCH_CASES, ids=list(CATCH_CASES))
def test_lead_counts_to_the_horizon_and_delay_from_the_last_activity(case: str) -> None:
    at, expected = CATCH_CASES[case]
    o = run([warn("u", at)], {"u": days(0)})["pulse"]["overall"]
    assert (o["caught"], o["lead_days"]["median"], o["delay_days"]["median"]) == expected
    assert o["lead_time_days"] == o["delay_days"]  # the old name keeps its old meaning


def test_lead_quartiles_over_the_caught_churns_use_the_first_warning() -> None:
    activity = {"a": days(0), "b": days(0), "c": days(0)}
    # a: warned on day 3 and again on day 6 (the first counts): lead 7; b: lead 2; c: lead 5
    outputs = [warn("a", 3), warn("a", 6), warn("b", 8), warn("c", 5)]
    o = run(outputs, activity)["pulse"]["overall"]
    assert (o["churned"], o["caught"], o["recall"]) == (3, 3, 1.0)
    assert o["lead_days"] == {"median": 5.0, "p25": 3.5, "p75": 6.0}
    assert o["delay_days"] == {"median": 5.0, "p25": 4.0, "p75": 6.5}


def test_silence_rules_are_judged_like_pulse() -> None:
    activity = {
        "gone": days(0, 1, 2),  # silent from day 2 to the end (day 200): churned
        "back": days(0, 10, 40),  # a 30-day gap: not a churn at H = 60
        "late": days(150),  # silent for 50 days only when the history ends: open
        "missed": days(0, 100),  # a 100-day gap, then silent after day 100: two churns
    }
    outputs = [warn("gone", 5), warn("back", 13), warn("late", 160)]
    result = run(outputs, activity, 200, horizon=60, rules=(14, 30))
    pulse = result["pulse"]["overall"]
    assert (pulse["warned"], pulse["true_positives"], pulse["censored"]) == (2, 1, 1)
    assert (pulse["churned"], pulse["caught"], pulse["recall"]) == (4, 1, 0.25)
    assert pulse["delay_days"]["median"] == 3.0 and pulse["lead_days"]["median"] == 57.0
    # 14 days in: gone@16, back@24 (back on day 40: wrong), back@54, late@164 (censored),
    # missed@14, missed@114
    silent14 = result["rules"][0]
    assert silent14["rule"] == "silent 14 days" and result["baseline"] == silent14
    o = silent14["overall"]
    assert (o["warned"], o["true_positives"], o["censored"], o["caught"]) == (5, 4, 1, 4)
    assert o["lead_days"]["median"] == 46.0 and o["delay_days"]["median"] == 14.0
    assert result["rules"][1]["rule"] == "silent 30 days"


def test_baseline_days_puts_that_rule_first() -> None:
    result = evaluate(
        [], {"u": days(0)}, 100 * D, horizon_days=H, lowest_tier="bronze", baseline_days=14
    )
    assert [r["rule"] for r in result["rules"]] == [
        "silent 14 days", "silent 7 days", "silent 30 days", "silent 60 days",
    ]  # fmt: skip
    assert result["baseline"]["rule"] == "silent 14 days"


def test_per_tier_uses_the_tier_at_the_time() -> None:
    activity = {"vip": days(0, 1), "low": days(0)}
    outputs = [
        tier_changed("vip", 0, None, "gold", "initial", "first_seen", 600, 500),
        warn("vip", 4, "gold"),
        warn("low", 3),
    ]
    result = run(outputs, activity, horizon=60)
    per_tier = result["pulse"]["per_tier"]
    assert per_tier["gold"]["warned"] == 1 and per_tier["gold"]["churned"] == 1
    assert per_tier["bronze"]["warned"] == 1 and per_tier["bronze"]["churned"] == 1
    assert result["rules"][0]["per_tier"]["gold"]["warned"] == 1


def test_no_warnings_gives_no_precision() -> None:
    o = run([], {"u": days(0)}, 10, horizon=60)["pulse"]["overall"]
    assert o["precision"] is None and o["came_back_within_horizon"] is None
    assert o["churned"] == 0


@pytest.mark.parametrize(
    "kwargs",
    [{"horizon_days": 0}, {"horizon_days": 10, "silence_rules": ()}],
    ids=["no horizon", "no silence rule"],
)
def test_bad_arguments_are_refused(kwargs: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        evaluate([], {}, D, lowest_tier="bronze", **kwargs)  # type: ignore[arg-type]


# -- stage quality ---------------------------------------------------------------------------


def test_stage_quality_counts_returns_after_the_transition_in_the_judged_period() -> None:
    def moved(user: str, day: float, stage: str) -> Output:
        return lifecycle_changed(user, int(day * D), Stage.AT_RISK, stage, "silence", {})

    activity = {"a": days(0, 50), "b": days(0), "c": days(0, 5), "d": days(0, 30)}
    outputs = [
        moved("a", 40, Stage.CHURNED),  # back on day 50
        moved("b", 40, Stage.CHURNED),  # never back
        moved("c", 3, Stage.CHURNED),  # before J: left out
        moved("d", 20, Stage.DORMANT),  # back on day 30
    ]
    quality = run(outputs, activity, judge_from_day=10)["stage_quality"]
    assert quality["churned"] == {"transitions": 2, "returned": 1, "share": 0.5}
    assert quality["dormant"] == {"transitions": 1, "returned": 1, "share": 1.0}


# -- ROC AUC ---------------------------------------------------------------------------------


def brute_force_auc(scores: Sequence[float], positive: Sequence[bool]) -> float | None:
    pos = [s for s, p in zip(scores, positive, strict=True) if p]
    neg = [s for s, p in zip(scores, positive, strict=True) if not p]
    if not pos or not neg:
        return None
    wins = sum(1.0 if p > n else 0.5 if p == n else 0.0 for p, n in product(pos, neg))
    return wins / (len(pos) * len(neg))


def test_auc_of_a_small_known_example() -> None:
    # positives 0.9, 0.4, 0.4; negatives 0.4, 0.1: pairs won 2 + 0.5 + 1 + 0.5 + 1 = 5 of 6
    auc = roc_auc([0.9, 0.4, 0.4, 0.4, 0.1], [True, True, True, False, False])
    assert auc == {"auc": round(5 / 6, 4), "positives": 3, "negatives": 2}


def test_auc_is_none_when_a_class_is_empty() -> None:
    assert roc_auc([0.2, 0.3], [True, True])["auc"] is None
    assert roc_auc([], [])["auc"] is None


@PROPERTY
@given(
    st.lists(
        st.tuples(st.sampled_from([0.0, 0.1, 0.25, 0.5, 0.9, 1.0]), st.booleans()), max_size=40
    )
)
def test_auc_equals_the_pairwise_count(items: list[tuple[float, bool]]) -> None:
    scores = [s for s, _ in items]
    labels = [p for _, p in items]
    expected = brute_force_auc(scores, labels)
    got = roc_auc(scores, labels)["auc"]
    assert (got is None) == (expected is None)
    if got is not None and expected is not None:
        # auc is rounded to 4 decimals: half a unit of the last one, and the float error of
        # a tie exactly on it (0.03125 prints 0.0312).
        assert math.isclose(got, expected, abs_tol=5e-5 + 1e-9)


def test_auc_at_warnings_ranks_the_warnings_risk_scores() -> None:
    activity = {"a": days(0), "b": days(0), "c": days(0, 8)}
    outputs = [warn("a", 5, risk=0.9), warn("b", 5, risk=0.2), warn("c", 5, risk=0.4)]
    auc = run(outputs, activity)["auc"]["at_warnings"]
    # came true: a (0.9), b (0.2); back: c (0.4): a beats c, b does not
    assert auc == {"auc": 0.5, "positives": 2, "negatives": 1}


# -- calibration -----------------------------------------------------------------------------


def test_calibration_splits_into_ten_equal_groups_by_rank() -> None:
    predicted = [i / 20 for i in range(20)][::-1]  # in any order: grouped by rank
    observed = [i % 2 == 0 for i in range(20)][::-1]  # one of each pair of neighbours
    table = calibration(predicted, observed)
    assert table["n"] == 20 and [g["n"] for g in table["groups"]] == [2] * 10
    first, last = table["groups"][0], table["groups"][-1]
    assert first == {"group": 1, "n": 2, "predicted": 0.025, "observed": 0.5, "gap": 0.475}
    assert last == {"group": 10, "n": 2, "predicted": 0.925, "observed": 0.5, "gap": -0.425}
    assert table["max_abs_gap"] == 0.475


@pytest.mark.parametrize(("n", "sizes"), [(25, [2, 3] * 5), (3, [1, 1, 1]), (0, [])])
def test_calibration_groups_differ_in_size_by_at_most_one(n: int, sizes: list[int]) -> None:
    table = calibration([i / max(n, 1) for i in range(n)], [True] * n)
    assert [g["n"] for g in table["groups"]] == sizes
    assert (table["max_abs_gap"] is None) == (n == 0)


# -- with a churn model ----------------------------------------------------------------------


def model_history() -> dict[str, list[int]]:
    return {
        "a": days(0, 3, 30, 31, 45),
        "b": days(2, 20),
        "c": days(10, 12, 14, 16, 60, 61, 90),
        "d": days(5, 5.5, 40),
        "e": days(70),
    }


def test_pr_curve_points_are_the_equivalent_silence_rules() -> None:
    risk = SilenceModel(threshold=0.42)
    result = run([], model_history(), 120, horizon=H, rules=(7, 10, 14), risk=risk)
    curve = result["pr_curve"]
    assert curve is not None and curve["operating_threshold"] == 0.42
    assert curve["operating_rule"] == "silent 8.4 days"  # the model's own words
    by_threshold = {p["threshold"]: p for p in curve["points"]}
    assert sorted(by_threshold) == sorted({*PR_THRESHOLDS, 0.42})
    assert [p["threshold"] for p in curve["points"] if p["operating"]] == [0.42]
    # threshold th warns th * 20 days into a silence, exactly as "silent th*20 days" does
    for rule in result["rules"]:
        point = by_threshold[rule["silent_days"] / 20]
        o = rule["overall"]
        assert (point["warnings"], point["precision"], point["recall"]) == (
            o["warned"], o["precision"], o["recall"],
        ), rule["rule"]  # fmt: skip
        assert point["lead_median_days"] == o["lead_days"]["median"]
    assert curve["churns"] == result["pulse"]["overall"]["churned"]


def test_pr_curve_stops_asking_about_a_silence_once_a_threshold_gives_no_warning() -> None:
    risk = SilenceModel()
    run([], {"u": days(0, 1)}, 1.5, risk=risk)  # one silence of 1 day, one of half a day
    # day 0's silence: thresholds 0.05 (1 day: at the next activity, no warning) stops it;
    # day 1's: 0.05 warns at day 2, after the end, and stops it
    assert risk.calls == 2


def test_warning_time_not_after_the_silence_began_is_an_error() -> None:
    class Early(SilenceModel):
        def warning_time(self, days: Sequence[int], last_active: int, threshold: float) -> int:
            return last_active

    with pytest.raises(ValueError, match="must come after"):
        run([], {"u": days(0)}, risk=Early())


def test_snapshot_scores_everyone_active_by_then_against_the_next_horizon() -> None:
    activity = {
        "a": days(49, 53),  # silent 1 day at S = 50, back within H: negative, score 0.05
        "b": days(35),  # silent 15 days, never back: positive, 0.75
        "c": days(45, 70),  # silent 5 days, back after H: positive, 0.25
        "d": days(38, 52),  # silent 12 days, back within H: negative, 0.6
        "e": days(55),  # first active after S: not scored
    }
    result = run([], activity, 100, judge_from_day=50, risk=SilenceModel())
    snapshot = result["snapshot"]
    assert snapshot is not None and snapshot["users"] == 4
    assert snapshot["at"].startswith("1970-02-20")  # day 50
    # positives b 0.75, c 0.25; negatives a 0.05, d 0.6: won b>a, b>d, c>a of 4
    assert result["auc"]["at_snapshot"] == {"auc": 0.75, "positives": 2, "negatives": 2}
    groups = snapshot["calibration"]["groups"]
    assert [(g["predicted"], g["observed"]) for g in groups] == [
        (0.05, 0.0), (0.25, 1.0), (0.6, 0.0), (0.75, 1.0),
    ]  # fmt: skip


def test_snapshot_needs_its_horizon_inside_the_history() -> None:
    result = run([], {"u": days(0, 95)}, 100, judge_from_day=95, risk=SilenceModel())
    assert result["snapshot"] is None and result["auc"]["at_snapshot"] is None
    assert "snapshot" in result["missing"]
    assert result["pr_curve"] is not None  # the rest is still measured


def test_snapshot_defaults_to_one_horizon_before_the_end_without_a_judged_period() -> None:
    result = run([], {"u": days(0, 95)}, 100, risk=SilenceModel())
    snapshot = result["snapshot"]
    assert snapshot is not None and snapshot["at"].startswith("1970-04-01")  # day 90


def test_auc_at_the_silence_moments_scores_the_shortest_rule_moments() -> None:
    # "silent 7 days" moments: a@7 (back day 12: negative), b@7 (never: positive),
    # c@27 (after day 20; back day 60: positive); scores 7/20 everywhere: a tie
    activity = {"a": days(0, 12), "b": days(0), "c": days(20, 60)}
    auc = run([], activity, 100, rules=(14, 7), risk=SilenceModel())["auc"]
    assert auc["silence_rule"] == "silent 7 days"
    # and a@19, c@67 (never back: positive): 4 positives, 1 negative, all tied
    assert auc["at_silence"] == {"auc": 0.5, "positives": 4, "negatives": 1}


def test_without_a_model_the_model_sections_are_none_and_say_why() -> None:
    result = run([warn("u", 5)], {"u": days(0)})
    assert result["snapshot"] is None and result["pr_curve"] is None
    assert result["calibration_at_warnings"] is None and result["auc"]["at_silence"] is None
    assert set(result["missing"]) == {"snapshot", "calibration", "pr_curve"}
    assert "--churn-model" in result["missing"]["pr_curve"]
    assert result["auc"]["at_warnings"]["positives"] == 1  # needs no model


def test_calibration_at_warnings_uses_the_warnings_risk_scores() -> None:
    activity = {"a": days(0), "b": days(0, 8)}
    outputs = [warn("a", 5, risk=0.8), warn("b", 5, risk=0.3)]
    table = run(outputs, activity, risk=SilenceModel())["calibration_at_warnings"]
    assert table is not None
    assert [(g["predicted"], g["observed"]) for g in table["groups"]] == [(0.3, 0.0), (0.8, 1.0)]


def test_pr_curve_does_not_ask_about_silences_over_before_the_judged_period() -> None:
    risk = SilenceModel()  # operating threshold 0.35 is on the grid: 19 thresholds
    run([], {"u": days(0, 30, 60)}, 100, judge_from_day=40, risk=risk)
    # days 30-60 and 60-100 are long enough for every threshold (at most 19 days in);
    # days 0-30 ended before J and is not asked about
    assert risk.calls == 2 * 19


def test_warning_rule_points_match_the_evaluations_curve() -> None:
    history, end = model_history(), 120 * D
    risk = SilenceModel(threshold=0.42)
    curve = run([], history, 120, judge_from_day=30, risk=risk)["pr_curve"]
    assert curve is not None
    points = warning_rule_points(
        history, end, horizon_days=H, judge_from=30 * D, risk=risk, thresholds=[0.7, 0.35, 0.42]
    )
    assert [p["threshold"] for p in points] == [0.35, 0.42, 0.7]
    expected = {p["threshold"]: p for p in curve["points"]}
    assert points == [expected[0.35], expected[0.42], expected[0.7]]


def test_users_with_the_same_short_history_share_the_models_answers() -> None:
    risk = SilenceModel()  # 19 thresholds, all warning within the 100 days
    curve = run([], {"a": days(0), "b": days(0)}, 100, risk=risk)["pr_curve"]
    assert curve is not None
    assert risk.calls == 19  # asked for a, remembered for b
    assert all(p["warnings"] == 2 for p in curve["points"])
    # caught when the warning is at most H = 10 days in: thresholds up to 0.5
    assert [p["recall"] for p in curve["points"]] == [1.0] * 10 + [0.0] * 9
