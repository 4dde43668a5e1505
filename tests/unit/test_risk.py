"""The churn probability and the warnings it decides: P(no activity within the horizon) from the
fitted model on active days, scored at midnight, one warning per silence at the crossing."""

from __future__ import annotations

import math

import msgspec
import pytest
from hypothesis import given
from hypothesis import strategies as st

from streams.core import bgnbd, risk
from streams.core.churn import WarningReason, risk_score, warning_figures
from streams.core.engine import apply_event, sweep
from streams.core.eventtime import DAY_MS
from streams.core.facts import facts_at
from streams.core.outputs import Kind
from streams.core.policy import ChurnModel, EmpiricalCurve, Policy
from streams.core.state import UserState

from .pulse_testkit import BASE, POLICY, PROPERTY, at, ev, purchase, run, sweep_in_steps

PAPER = ChurnModel(r=0.243, alpha=4.414, a=0.793, b=2.426)
WITH_MODEL = Policy(churn_model=PAPER)
# Stages as `pulse fit` proposes them for CDNOW: dormancy no earlier than the model's horizon.
FITTED = Policy(churn_model=PAPER, dormant_after_days=90, churned_after_days=355)
PARAMS = bgnbd.Params(0.243, 4.414, 0.793, 2.426)
H = 60 / 7
DAY0 = BASE // DAY_MS


def _weekly_buyer() -> UserState:
    """Bought on days 0, 7, 14 and 21 at 10:00, then nothing."""
    state, _, _ = run([purchase(at(days=d, hours=10), 2_000) for d in (0, 7, 14, 21)], WITH_MODEL)
    assert state is not None
    return state


def _warnings(outputs: list) -> list:  # type: ignore[type-arg]
    return [o for o in outputs if o.kind == Kind.WARNING]


# -- the probability ----------------------------------------------------------------------


@PROPERTY
@given(
    x=st.integers(0, 40),
    t_x=st.floats(0, 80),
    extra=st.floats(0, 200),
    later=st.floats(0.1, 100),
)
def test_p0_is_a_probability_that_silence_only_raises(
    x: int, t_x: float, extra: float, later: float
) -> None:
    t_x = 0.0 if x == 0 else t_x
    T = t_x + extra
    now = bgnbd.p_no_activity(PARAMS, x, t_x, T, H)
    then = bgnbd.p_no_activity(PARAMS, x, t_x, T + later, H)
    assert 0.0 <= now <= 1.0
    assert then >= now - 1e-12


def test_p0_is_the_closed_form() -> None:
    x, t_x, T = 3, 3.0, 60 / 7
    r, alpha, a, b = PARAMS
    alive = 1 / (1 + a / (b + x - 1) * ((alpha + T) / (alpha + t_x)) ** (r + x))
    quiet = ((alpha + T) / (alpha + T + H)) ** (r + x)
    assert bgnbd.p_no_activity(PARAMS, x, t_x, T, H) == pytest.approx(1 - alive + alive * quiet)
    # A first-time buyer cannot have dropped out under BG/NBD: only the quiet term remains.
    assert bgnbd.p_no_activity(PARAMS, 0, 0, 2.0, H) == pytest.approx(
        ((alpha + 2) / (alpha + 2 + H)) ** r
    )


def test_without_a_model_the_facts_carry_no_probability() -> None:
    f = facts_at(_weekly_buyer(), at(days=40), POLICY)
    assert f.p_churn is None and f.p_alive is None
    assert "p_churn" not in warning_figures(f) and "p_alive" not in warning_figures(f)


def test_with_a_model_the_risk_is_p0_on_active_days() -> None:
    state = _weekly_buyer()
    assert (state.active_days, state.first_active_day, state.last_active_day) == (
        4,
        DAY0,
        DAY0 + 21,
    )
    f = facts_at(state, at(days=60, hours=5), WITH_MODEL)
    want = bgnbd.p_no_activity(PARAMS, 3, 3.0, 60 / 7, H)  # T counts whole days: day 60
    assert f.p_churn == pytest.approx(want)
    assert risk_score(f, WITH_MODEL) == round(want, 4)
    assert warning_figures(f)["p_churn"] == round(want, 6)
    assert warning_figures(f)["p_alive"] == round(bgnbd.p_alive(PARAMS, 3, 3.0, 60 / 7), 6)


def test_sessions_count_as_active_days_and_passive_events_do_not() -> None:
    state, _, _ = run(
        [
            ev(at(days=0), "session_start"),
            ev(at(days=0, hours=5), "page_view"),  # same day: not a new active day
            ev(at(days=3), "points_earned"),  # passive
            ev(at(days=9), "page_view"),
        ],
        WITH_MODEL,
    )
    assert state is not None
    assert (state.active_days, state.first_active_day, state.last_active_day) == (
        2,
        DAY0,
        DAY0 + 9,
    )


def test_a_late_event_on_an_active_day_is_not_a_new_active_day() -> None:
    state, _, _ = run(
        [
            ev(at(days=0, hours=20), "page_view"),
            ev(at(days=1, hours=1), "page_view"),
            ev(at(days=0, hours=2), "page_view"),  # late, same day as the first
        ],
        WITH_MODEL,
    )
    assert state is not None and state.active_days == 2


def test_a_state_from_before_the_statistics_is_seeded_from_its_buckets() -> None:
    state, _, _ = run([ev(at(days=d), "page_view") for d in (0, 2, 5)], WITH_MODEL)
    assert state is not None
    # As a state written before the fields existed decodes: with their defaults.
    old = msgspec.structs.replace(state, active_days=0, first_active_day=None, last_active_day=None)
    assert old.active_days == 0
    after = apply_event(old, ev(at(days=6), "page_view"), WITH_MODEL).state
    assert (after.active_days, after.first_active_day, after.last_active_day) == (
        4,
        DAY0,
        DAY0 + 6,
    )


@PROPERTY
@given(
    n=st.integers(1, 30),
    span=st.integers(0, 200),
    level=st.floats(0.05, 0.99),
    ahead=st.integers(0, 60),
)
def test_day_reaching_is_the_first_day_at_the_level(
    n: int, span: int, level: float, ahead: int
) -> None:
    span = 0 if n == 1 else span
    stats = risk.Stats(n, DAY0, DAY0 + span)
    start = stats.last_day + ahead
    day = risk.day_reaching(PAPER, stats, level, start)
    assert day is not None and day >= start
    assert risk.p_churn(PAPER, stats, day) >= level
    if day > start:
        assert risk.p_churn(PAPER, stats, day - 1) < level


# -- the warnings it decides ----------------------------------------------------------------


def test_a_silent_user_is_warned_once_at_the_midnight_the_probability_crosses() -> None:
    state = _weekly_buyer()
    stats = risk.stats_of(state)
    assert stats is not None
    due = risk.warning_at(PAPER, stats, state.last_active or 0)
    assert due is not None and due % DAY_MS == DAY_MS - 1  # the end of a day
    # Sweeps at many moments, as ticks would come: the warning is the same, once.
    times = [at(days=21) + k * 6 * 3_600_000 for k in range(4 * 200)]
    final, outs = sweep_in_steps(state, times, FITTED)
    warnings = _warnings(outs)
    assert len(warnings) == 1
    w = warnings[0]
    assert w.ts == due and w.payload["reason"] == WarningReason.CHURN_PROBABILITY
    assert w.payload["risk_score"] >= PAPER.warn_probability
    day = due // DAY_MS
    if due > risk.warn_from(PAPER, state.last_active or 0):
        assert risk.p_churn(PAPER, stats, day - 1) < PAPER.warn_probability
    assert final.stage in ("at_risk", "dormant", "churned")


def test_a_user_dormant_before_the_crossing_gets_no_warning() -> None:
    # With the default 30-day dormancy, this regular buyer's probability crosses only after
    # it: the dormant transition is the signal (fitted stage thresholds avoid it).
    times = [at(days=21) + k * DAY_MS for k in range(200)]
    _, outs = sweep_in_steps(_weekly_buyer(), times, WITH_MODEL)
    assert not _warnings(outs)
    assert [o.payload["to_stage"] for o in outs if o.kind == Kind.LIFECYCLE] == [
        "dormant",
        "churned",
    ]


def test_no_warning_before_the_minimum_silence_even_for_a_likely_churner() -> None:
    # One purchase: P0 is above the level at once, but the warning waits for the silence.
    state, outs, _ = run([purchase(at(days=0, hours=10), 1_500)], WITH_MODEL)
    assert state is not None and not _warnings(outs)
    assert (facts_at(state, at(days=1), WITH_MODEL).p_churn or 0) > PAPER.warn_probability
    _, outs = sweep_in_steps(state, [at(days=d) for d in range(1, 20)], WITH_MODEL)
    (w,) = _warnings(outs)
    # The end of the day on which 7 days of silence are complete (day 7, 10:00).
    assert w.ts == at(days=8) - 1


def test_a_user_back_the_day_the_minimum_silence_ends_is_not_warned() -> None:
    # Date-only histories stamp events at midnight: back on day 7 means no warning, and back
    # on day 8 means the warning of day 7's end came before the return.
    _, outs, _ = run([purchase(at(days=0), 1_500), purchase(at(days=7), 1_500)], WITH_MODEL)
    assert not _warnings(outs)
    _, outs, _ = run([purchase(at(days=0), 1_500), purchase(at(days=8), 1_500)], WITH_MODEL)
    assert [w.ts for w in _warnings(outs)] == [at(days=8) - 1]


def test_a_silent_user_is_rescored_on_the_schedule_until_warned() -> None:
    state = _weekly_buyer()  # last active day 21
    seen = []
    now = at(days=21, hours=12)
    for _ in range(12):
        state = sweep(state, now, FITTED).state
        seen.append(state.next_check)
        now = state.next_check
    stats = risk.stats_of(state)
    assert stats is not None
    warn = risk.warning_at(PAPER, stats, at(days=21, hours=10))
    rescores = [(t - at(days=21)) // DAY_MS for t in seen if t % DAY_MS == 0]
    # Leaving out the RFM checkpoints: the recency score falls the day after 14, 30, 90 and
    # 180 days since the last purchase.
    rescores = [d for d in rescores if d not in (15, 31, 91, 181)]
    assert rescores[:3] == [7, 14, 30]
    assert warn in seen  # the warning's own checkpoint is among them
    # The stored risk is the probability as of the last evaluation.
    f = facts_at(state, state.evaluated_at, FITTED)
    assert state.risk == round(f.p_churn or 0, 4)


def test_no_warning_once_the_silence_has_lasted_the_horizon() -> None:
    # A level so high the probability reaches it only after the horizon: never warned.
    model = PAPER.model_copy(update={"warn_probability": 0.97})
    policy = Policy(churn_model=model, dormant_after_days=90, churned_after_days=355)
    state = _weekly_buyer()
    stats = risk.stats_of(state)
    assert stats is not None
    late = risk.day_reaching(model, stats, 0.97, stats.last_day)
    assert late is not None and late - stats.last_day >= 60
    assert risk.warning_at(model, stats, state.last_active or 0) is None
    _, outs = sweep_in_steps(state, [at(days=21) + k * DAY_MS for k in range(400)], policy)
    assert not _warnings(outs)


@pytest.mark.parametrize("back_on_day", [None, 10, 13, 14, 15])
def test_a_warning_at_one_moment_is_decided_then_and_never_later(back_on_day: int | None) -> None:
    # min = max = 10 days: the one-time buyer's P0 is above the level at day 10's end, so the
    # warning comes then, unless they were back by then; a return after it changes nothing.
    model = PAPER.model_copy(update={"min_silence_days": 10, "max_silence_days": 10})
    policy = Policy(churn_model=model, dormant_after_days=90, churned_after_days=355)
    events = [purchase(at(days=0), 1_500)]
    if back_on_day is not None:
        events.append(purchase(at(days=back_on_day), 1_500))
    state, outs, _ = run(events, policy)
    assert state is not None
    _, more = sweep_in_steps(state, [at(days=d) for d in range(16, 120)], policy)
    warned = [w.ts for w in _warnings(outs + more)]
    if back_on_day is not None and back_on_day <= 10:
        # Back in time: the next silence has its own moment, 10 days after the return, and
        # nothing else (a repeat buyer's P0 may well be below the level then).
        assert set(warned) <= {at(days=back_on_day + 11) - 1}
    else:
        assert warned == [at(days=11) - 1]


def test_a_probability_that_crosses_after_the_moment_warns_nobody() -> None:
    # The weekly buyer's P0 reaches the level only weeks into the silence: with the decision
    # at 7 days it is below, so there is no warning, however long the silence lasts.
    model = PAPER.model_copy(update={"min_silence_days": 7, "max_silence_days": 7})
    policy = Policy(churn_model=model, dormant_after_days=90, churned_after_days=355)
    state = _weekly_buyer()
    stats = risk.stats_of(state)
    assert stats is not None
    crossing = risk.warning_at(PAPER, stats, state.last_active or 0)
    assert crossing is not None and crossing > at(days=29)
    assert risk.warning_at(model, stats, state.last_active or 0) is None
    _, outs = sweep_in_steps(state, [at(days=21) + k * DAY_MS for k in range(200)], policy)
    assert not _warnings(outs)


def test_a_window_that_ends_before_it_starts_is_rejected() -> None:
    with pytest.raises(ValueError, match="max_silence_days"):
        PAPER.model_validate({**PAPER.model_dump(), "min_silence_days": 14, "max_silence_days": 7})


def test_the_silence_rule_decides_for_a_user_never_active() -> None:
    state, _, _ = run([ev(at(days=0), "points_earned")], WITH_MODEL)
    assert state is not None and state.active_days == 0
    assert facts_at(state, at(days=5), WITH_MODEL).p_churn is None
    _, outs = sweep_in_steps(state, [at(days=d) for d in range(1, 15)], WITH_MODEL)
    assert [w.payload["reason"] for w in _warnings(outs)] == [WarningReason.SILENCE]


# -- the empirical model ------------------------------------------------------------------

EMPIRICAL = ChurnModel(
    empirical=(
        EmpiricalCurve(min_active_days=1, p_churn=(0.5, 0.6, 0.75, 0.9)),
        EmpiricalCurve(min_active_days=3, p_churn=(0.1, 0.2, 0.3, 0.5, 0.8)),
    ),
    warn_probability=0.7,
    min_silence_days=0,
)


@pytest.mark.parametrize(
    ("active_days", "silent", "want"),
    [(1, 0, 0.5), (1, 2, 0.75), (1, 50, 0.9), (2, 1, 0.6), (3, 3, 0.5), (7, 4, 0.8), (7, 99, 0.8)],
)
def test_the_empirical_curve_of_the_users_stratum_scores(
    active_days: int, silent: int, want: float
) -> None:
    stats = risk.Stats(active_days, DAY0, DAY0 + 10)
    assert risk.p_churn(EMPIRICAL, stats, DAY0 + 10 + silent) == want


@pytest.mark.parametrize(
    ("active_days", "level", "from_silence", "want"),
    [(1, 0.7, 0, 2), (1, 0.7, 3, 3), (1, 0.95, 0, None), (5, 0.7, 0, 4), (5, 0.05, 2, 2)],
)
def test_the_empirical_crossing_is_the_first_day_at_the_level(
    active_days: int, level: float, from_silence: int, want: int | None
) -> None:
    stats = risk.Stats(active_days, DAY0, DAY0 + 10)
    got = risk.day_reaching(EMPIRICAL, stats, level, stats.last_day + from_silence)
    assert got == (None if want is None else stats.last_day + want)


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"r": 1.0}, "all four"),
        ({}, "BG/NBD parameters"),
        ({"empirical": [{"min_active_days": 2, "p_churn": [0.5]}]}, "min_active_days 1"),
        ({"empirical": [{"min_active_days": 1, "p_churn": [0.5, 0.4]}]}, "must not decrease"),
        ({"r": 1, "alpha": 1, "a": 1, "b": 1, "warn_probability": 1.0}, "warn_probability"),
    ],
)
def test_an_unusable_churn_model_is_rejected_with_the_field(fields: dict, message: str) -> None:  # type: ignore[type-arg]
    with pytest.raises(ValueError, match=message):
        ChurnModel.model_validate(fields)


def test_old_parameter_files_still_load() -> None:
    model = ChurnModel.model_validate(
        {"model": "BG/NBD", "r": 0.243, "alpha": 4.414, "a": 0.793, "b": 2.426, "unit": "weeks"}
    )
    assert model.has_bgnbd and model.horizon_days == 60 and math.isclose(model.r or 0, 0.243)


def test_the_models_stage_thresholds_apply_unless_the_policy_file_sets_its_own(
    tmp_path: pytest.TempPathFactory,
) -> None:
    from pathlib import Path

    from streams.core.policy import load_policy

    root = Path(str(tmp_path))
    model = root / "model.json"
    model.write_text(
        '{"r": 0.243, "alpha": 4.414, "a": 0.793, "b": 2.426,'
        ' "dormant_after_days": 90, "churned_after_days": 355}'
    )
    policy = load_policy(None, model)
    assert (policy.dormant_after_days, policy.churned_after_days) == (90, 355)
    own = root / "policy.toml"
    own.write_text("dormant_after_days = 45\nchurned_after_days = 400\n")
    policy = load_policy(own, model)
    assert (policy.dormant_after_days, policy.churned_after_days) == (45, 400)
    assert policy.churn_model is not None and policy.churn_model.warn_probability == 0.7
