"""The late look: a warning decided at one moment of silence, and the users it did not warn
looked at once more later in the same silence, with a level of their own. In the engine (one
warning per silence, at the look's exact moment, scheduled, not polled) and as `pulse fit`
judges it (the same figures as the curve's simulation of the rule)."""

from __future__ import annotations

import random

import pytest

from streams.core import risk
from streams.core.eventtime import DAY_MS
from streams.core.outputs import Kind
from streams.core.policy import ChurnModel, Policy
from streams.core.state import UserState
from streams.offline.evaluation import judged_silences, warning_rule_points
from streams.offline.latelook import Look, choose_look, looks
from streams.offline.riskmodel import CoreRisk, rule_text

from .pulse_testkit import at, purchase, run, sweep_in_steps

PAPER = ChurnModel(r=0.243, alpha=4.414, a=0.793, b=2.426)
# At 7 days, P0 >= 0.70; else at 30 days, P0 >= 0.50. The weekly buyer below is at 0.29 after
# 7 days and 0.534 after 30; a one-time buyer at 0.79 after 7 days.
LOOK = PAPER.model_copy(
    update={
        "min_silence_days": 7,
        "max_silence_days": 7,
        "late_silence_days": 30,
        "late_warn_probability": 0.50,
    }
)


def _policy(model: ChurnModel) -> Policy:
    return Policy(churn_model=model, dormant_after_days=90, churned_after_days=355)


def _weekly_buyer(policy: Policy, back_on_day: int | None = None) -> UserState:
    days = [0, 7, 14, 21] + ([back_on_day] if back_on_day is not None else [])
    state, _, _ = run([purchase(at(days=d, hours=10), 2_000) for d in days], policy)
    assert state is not None
    return state


def _warned_at(state: UserState, policy: Policy, steps: list[int]) -> list[int]:
    _, outs = sweep_in_steps(state, steps, policy)
    return [o.ts for o in outs if o.kind == Kind.WARNING]


@pytest.mark.parametrize("steps", ["daily", "one sweep"])
def test_a_user_the_moment_did_not_warn_is_warned_at_the_late_look(steps: str) -> None:
    policy = _policy(LOOK)
    state = _weekly_buyer(policy)
    # The end of the day on which 30 days of silence after day 21's purchase are complete.
    look = at(days=52) - 1
    times = [at(days=d) for d in range(22, 120)] if steps == "daily" else [at(days=119)]
    assert _warned_at(state, policy, times) == [look]


def test_the_look_is_the_only_warning_of_the_silence_and_none_below_its_level() -> None:
    above = _policy(LOOK.model_copy(update={"late_warn_probability": 0.53}))
    below = _policy(LOOK.model_copy(update={"late_warn_probability": 0.54}))
    days = [at(days=d) for d in range(22, 200)]
    assert _warned_at(_weekly_buyer(above), above, days) == [at(days=52) - 1]
    assert _warned_at(_weekly_buyer(below), below, days) == []


def test_a_user_the_moment_warned_is_not_looked_at_again() -> None:
    policy = _policy(LOOK)
    state, outs, _ = run([purchase(at(days=0), 1_500)], policy)
    assert state is not None
    warned = [o.ts for o in outs if o.kind == Kind.WARNING]
    warned += _warned_at(state, policy, [at(days=d) for d in range(1, 120)])
    assert warned == [at(days=8) - 1]  # P0 0.79 >= 0.70 at the moment; nothing at day 30


@pytest.mark.parametrize("back_on_day", [40, 51])
def test_a_user_back_before_the_look_is_not_warned_by_it(back_on_day: int) -> None:
    policy = _policy(LOOK)
    state = _weekly_buyer(policy, back_on_day)
    # The silence after the return has its own moment and look, weeks later.
    warned = _warned_at(state, policy, [at(days=d) for d in range(back_on_day + 1, 60)])
    assert warned == []


def test_the_checkpoint_is_the_look_when_the_probability_will_have_reached_its_level() -> None:
    state = _weekly_buyer(_policy(LOOK))
    stats = risk.stats_of(state)
    assert stats is not None and state.last_active is not None
    assert risk.warning_at(LOOK, stats, state.last_active) is None  # 0.29 < 0.70 at day 7
    assert risk.late_warning_at(LOOK, stats, state.last_active) == at(days=52) - 1
    high = LOOK.model_copy(update={"late_warn_probability": 0.9})
    assert risk.late_warning_at(high, stats, state.last_active) is None
    assert risk.late_warning_at(PAPER, stats, state.last_active) is None  # no look


@pytest.mark.parametrize(
    ("update", "message"),
    [
        ({"late_silence_days": 30}, "both"),
        ({"late_warn_probability": 0.5}, "both"),
        ({"late_silence_days": 30, "late_warn_probability": 0.5}, "after the warning window"),
        (
            {"max_silence_days": 14, "late_silence_days": 14, "late_warn_probability": 0.5},
            "after the warning window",
        ),
        (
            {"max_silence_days": 14, "late_silence_days": 59.5, "late_warn_probability": 0.5},
            "within horizon_days",
        ),
        ({"max_silence_days": 14, "late_silence_days": 30, "late_warn_probability": 1.0}, "less"),
    ],
)
def test_a_late_look_that_cannot_work_is_rejected(update: dict[str, float], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        PAPER.model_validate({**PAPER.model_dump(), **update})


# -- judged as `pulse fit` judges it ---------------------------------------------------------


def _history(seed: int, users: int = 400) -> dict[str, list[int]]:
    """Users buying on random days over 300 days, some often, most rarely, at any hour."""
    rng = random.Random(seed)
    start = at(days=0)
    activity = {}
    for u in range(users):
        rate = rng.choice([0.005, 0.02, 0.05, 0.15])
        first = rng.randrange(0, 250)
        days = [first] + [d for d in range(first + 1, 300) if rng.random() < rate]
        activity[f"u{u}"] = [start + d * DAY_MS + rng.randrange(DAY_MS) for d in days]
    return activity


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_the_grid_judges_a_moment_as_the_curve_does(seed: int) -> None:
    """Two implementations of one judge: `looks` (arrays, every level at once) and the
    precision-recall curve's simulation (the engine's warning times, silence by silence)."""
    activity = _history(seed)
    end, judge_from = at(days=300), at(days=180)
    for model in (
        LOOK,
        LOOK.model_copy(update={"late_silence_days": None, "late_warn_probability": None}),
    ):
        levels = [0.5, 0.6, 0.7, 0.8]
        points = warning_rule_points(
            activity, end, horizon_days=60, judge_from=judge_from, risk=CoreRisk(model),
            thresholds=levels,
        )  # fmt: skip
        silences = judged_silences(activity, end, horizon_days=60, judge_from=judge_from)
        late = [] if model.late_silence_days is None else [30.0]
        grid = looks(model, silences, 7, levels, late, [0.5])
        judged = [g for g in grid if g.late_days == model.late_silence_days]
        assert [(g.level, g.warnings, _4(g.precision), _4(g.recall)) for g in judged] == [
            (p["threshold"], p["warnings"], p["precision"], p["recall"]) for p in points
        ]
        leads = [
            None if g.median_lead_days is None else round(g.median_lead_days, 3) for g in judged
        ]
        assert leads == [p["lead_median_days"] for p in points]


def _4(x: float | None) -> float | None:
    return None if x is None else round(x, 4)  # as the curve gives them


def _look(precision: float, recall: float, lead: float, level: float = 0.7) -> Look:
    return Look(14, level, 30, 0.6, 100, precision, recall, lead)


@pytest.mark.parametrize(
    ("candidates", "chosen"),
    [
        ([_look(0.70, 0.61, 45), _look(0.72, 0.59, 45)], 0),  # recall below the target
        ([_look(0.70, 0.61, 45), _look(0.72, 0.65, 44.9)], 0),  # lead below the target
        ([_look(0.70, 0.61, 45), _look(0.71, 0.60, 45)], 1),  # the more precise
        ([_look(0.70, 0.61, 45), _look(0.70, 0.62, 45)], 1),  # tie: the higher recall
        ([_look(0.70, 0.61, 45, 0.72), _look(0.70, 0.61, 45, 0.71)], 0),  # then the higher level
        ([_look(0.70, 0.5, 45)], None),
    ],
)
def test_the_fit_keeps_the_most_precise_look_that_meets_the_targets(
    candidates: list[Look], chosen: int | None
) -> None:
    best = choose_look(candidates, target_recall=0.60, min_lead_days=45)
    assert best is (None if chosen is None else candidates[chosen])


@pytest.mark.parametrize(
    ("update", "text"),
    [
        ({}, "P0 reaches 0.7 from 7 days of silence"),
        ({"max_silence_days": 30}, "P0 reaches 0.7 between 7 and 30 days of silence"),
        ({"max_silence_days": 7}, "P0 >= 0.7 at 7 days of silence"),
        (
            {"max_silence_days": 7, "late_silence_days": 30, "late_warn_probability": 0.5},
            "P0 >= 0.7 at 7 days of silence, else P0 >= 0.5 at 30 days (late look)",
        ),
    ],
)
def test_the_rule_is_stated_as_the_engine_applies_it(update: dict[str, float], text: str) -> None:
    assert rule_text(PAPER.model_copy(update=update)) == text
    assert CoreRisk(PAPER.model_copy(update=update), threshold=0.6).rule == text.replace(
        "0.7 ", "0.6 ", 1
    )
