"""The stage machine (decide_stage) and the churn rules it uses, on hand-made facts."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from streams.core.churn import WarningReason, is_dropping, is_silent, risk_score, warning_figures
from streams.core.facts import Facts
from streams.core.lifecycle import Stage, decide_stage
from streams.core.policy import days_ms

from .pulse_testkit import POLICY, PROPERTY, at

NOW = at(days=100)
SILENCE = WarningReason.SILENCE
DROP = WarningReason.ACTIVITY_DROP


def facts(
    *,
    age: float = 100,
    silence: float = 0.5,
    threshold: float = 7,
    gap: float | None = None,
    a7: int = 5,
    a30: int = 20,
    spend: int = 0,
    when: int = NOW,
) -> Facts:
    """Facts as of `when`; durations in days."""
    return Facts(
        at=when,
        age_ms=days_ms(age),
        silence_ms=days_ms(silence),
        typical_gap_days=gap,
        threshold_ms=days_ms(threshold),
        active_days_7d=a7,
        active_days_30d=a30,
        spend_window_cents=spend,
    )


def ago(days: float) -> int:
    return NOW - days_ms(days)


A, N, R, D, C, RE = (
    Stage.ACTIVE,
    Stage.NEW,
    Stage.AT_RISK,
    Stage.DORMANT,
    Stage.CHURNED,
    Stage.REACTIVATED,
)

# (previous stage, facts, returned_at, expected stage, expected reason)
TABLE = [
    # new users
    pytest.param(None, facts(age=0, silence=0), None, N, "first_seen", id="first-event-is-new"),
    pytest.param(N, facts(age=6.99, a7=3, a30=3), None, N, "first_seen", id="still-new"),
    pytest.param(
        N, facts(age=7, a7=3, a30=3), None, A, "new_period_over", id="new->active-at-period-end"
    ),
    pytest.param(N, facts(age=9, a7=3, a30=3), None, A, "new_period_over", id="new->active-late"),
    pytest.param(
        N, facts(age=5, silence=5, threshold=3, a7=1, a30=1), None, R, SILENCE, id="silent-new"
    ),
    pytest.param(None, facts(age=20), None, A, "active", id="first-look-at-an-old-user"),
    # silence beyond the user's own threshold
    pytest.param(A, facts(silence=6.99, threshold=7), None, A, "active", id="under-threshold"),
    pytest.param(A, facts(silence=7, threshold=7), None, R, SILENCE, id="at-threshold"),
    pytest.param(A, facts(silence=3, threshold=3), None, R, SILENCE, id="daily-user-3-days"),
    pytest.param(A, facts(silence=10, threshold=14), None, A, "active", id="slow-user-10-days"),
    pytest.param(A, facts(silence=14, threshold=14), None, R, SILENCE, id="slow-user-14-days"),
    # activity drop: 7-day rate below drop_ratio of the 30-day rate, with enough history
    pytest.param(A, facts(a7=0, a30=10), None, R, DROP, id="drop"),
    pytest.param(A, facts(a7=1, a30=24), None, R, DROP, id="drop-1-of-7-vs-24-of-30"),
    pytest.param(A, facts(a7=0, a30=7), None, A, "active", id="too-little-history-for-drop"),
    pytest.param(A, facts(a7=2, a30=20), None, A, "active", id="above-drop-ratio"),
    # hysteresis: inside an episode the user must climb back above drop_recover_ratio
    # (a silence episode ends on return; drop-episode hysteresis: test_engine)
    pytest.param(R, facts(a7=2, a30=20), None, A, "recovered", id="silence-episode-ends-on-return"),
    pytest.param(R, facts(a7=3, a30=20), None, A, "recovered", id="episode-above-recovery-ratio"),
    pytest.param(R, facts(silence=1, threshold=7), None, A, "recovered", id="silence-recovered"),
    pytest.param(R, facts(silence=8, threshold=7), None, R, SILENCE, id="still-silent"),
    # dormant and churned
    pytest.param(R, facts(silence=29.99), None, R, SILENCE, id="at-risk-short-of-dormant"),
    pytest.param(R, facts(silence=30), None, D, "silence_dormant", id="at-risk->dormant"),
    pytest.param(A, facts(silence=30), None, D, "silence_dormant", id="active->dormant"),
    pytest.param(D, facts(silence=59.99), None, D, "silence_dormant", id="still-dormant"),
    pytest.param(D, facts(silence=60), None, C, "silence_churned", id="dormant->churned"),
    pytest.param(A, facts(silence=75), None, C, "silence_churned", id="straight-to-churned"),
    pytest.param(C, facts(silence=300), None, C, "silence_churned", id="still-churned"),
    # return after dormancy or churn
    pytest.param(D, facts(silence=0), None, RE, "returned", id="dormant-returns"),
    pytest.param(C, facts(silence=0), None, RE, "returned", id="churned-returns"),
    pytest.param(
        D, facts(silence=0, a7=0, a30=10), None, RE, "returned", id="return-beats-drop-rule"
    ),
    # the reactivated period
    pytest.param(RE, facts(), ago(13.99), RE, "returned", id="within-reactivated-days"),
    pytest.param(RE, facts(), ago(14), A, "reactivation_settled", id="reactivated->active"),
    pytest.param(RE, facts(silence=7), ago(5), R, SILENCE, id="reactivated-goes-silent"),
    pytest.param(
        R, facts(silence=1), ago(5), RE, "returned", id="recovers-inside-reactivated-period"
    ),
    pytest.param(R, facts(silence=1), ago(20), A, "recovered", id="recovers-after-the-period"),
    pytest.param(A, facts(), ago(5), A, "active", id="returned_at-ignored-when-active"),
]


@pytest.mark.parametrize(("prev", "f", "returned_at", "stage", "reason"), TABLE)
def test_decide_stage(
    prev: str | None, f: Facts, returned_at: int | None, stage: str, reason: str
) -> None:
    assert decide_stage(prev, f, returned_at, POLICY) == (stage, reason)


@PROPERTY
@given(
    prev=st.sampled_from((None, *Stage.ALL)),
    age=st.floats(0, 400),
    silence=st.floats(0, 400),
    threshold=st.sampled_from([3, 5.5, 7, 14]),
    a30=st.integers(0, 30),
    a7=st.integers(0, 7),
    returned=st.one_of(st.none(), st.floats(0, 60)),
)
def test_decide_stage_is_total_and_silence_bounds_win(
    prev: str | None,
    age: float,
    silence: float,
    threshold: float,
    a30: int,
    a7: int,
    returned: float | None,
) -> None:
    f = facts(age=age, silence=min(silence, age), threshold=threshold, a7=min(a7, a30), a30=a30)
    stage, reason = decide_stage(prev, f, None if returned is None else ago(returned), POLICY)
    assert stage in Stage.ALL and reason
    if f.silence_ms >= days_ms(POLICY.churned_after_days):
        assert stage == Stage.CHURNED
    elif f.silence_ms >= days_ms(POLICY.dormant_after_days):
        assert stage == Stage.DORMANT
    elif prev in (Stage.DORMANT, Stage.CHURNED):
        assert stage == Stage.REACTIVATED
    if stage == Stage.AT_RISK:
        assert reason in (SILENCE, DROP)


# --------------------------------------------------------------------------- churn rules


def test_is_silent_is_inclusive_of_the_threshold() -> None:
    assert is_silent(facts(silence=7, threshold=7))
    assert not is_silent(facts(silence=6.99, threshold=7))


def test_drop_needs_the_minimum_history_even_with_no_recent_activity() -> None:
    assert not is_dropping(facts(a7=0, a30=7), POLICY, in_episode=False)
    assert is_dropping(facts(a7=0, a30=8), POLICY, in_episode=False)


@pytest.mark.parametrize(
    ("f", "score"),
    [
        pytest.param(facts(silence=0, a7=7, a30=30), 0.0, id="no-silence-no-drop"),
        pytest.param(facts(silence=0, a7=7, a30=10), 0.0, id="rate-rose-is-not-negative"),
        pytest.param(facts(silence=15, a7=0, a30=0), 0.5, id="half-way-to-dormant"),
        pytest.param(facts(silence=30, a7=0, a30=0), 1.0, id="dormant"),
        pytest.param(facts(silence=90, a7=0, a30=0), 1.0, id="silence-is-capped"),
        pytest.param(facts(silence=0, a7=0, a30=10), 1.0, id="full-drop"),
        pytest.param(facts(silence=15, a7=1, a30=15), 0.8571, id="both-compound"),
        pytest.param(facts(silence=3, a7=0, a30=0), 0.1, id="rounded-to-4-places"),
    ],
)
def test_risk_score(f: Facts, score: float) -> None:
    assert risk_score(f, POLICY) == score


@PROPERTY
@given(silence=st.floats(0, 1000), a7=st.integers(0, 7), a30=st.integers(0, 30))
def test_risk_score_is_between_0_and_1(silence: float, a7: int, a30: int) -> None:
    assert 0.0 <= risk_score(facts(silence=silence, a7=a7, a30=a30), POLICY) <= 1.0


def test_warning_figures_are_rounded_days() -> None:
    f = facts(silence=1 / 3, threshold=3, gap=1.0, a7=2, a30=9)
    assert warning_figures(f) == {
        "silence_days": 0.333,
        "typical_gap_days": 1.0,
        "threshold_days": 3.0,
        "active_days_7d": 2,
        "active_days_30d": 9,
    }


def test_recovery_from_a_drop_needs_the_higher_recovery_ratio() -> None:
    f = facts(a7=2, a30=20)
    # 2/7 is above drop_ratio x 20/30 but below drop_recover_ratio x 20/30.
    assert decide_stage(Stage.ACTIVE, f, None, POLICY) == (Stage.ACTIVE, "active")
    assert decide_stage(
        Stage.AT_RISK,
        f,
        None,
        POLICY,
        episode_start=0,
        episode_reason=WarningReason.ACTIVITY_DROP,
    ) == (Stage.AT_RISK, WarningReason.ACTIVITY_DROP)
