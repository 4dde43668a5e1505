"""The BG/NBD model: P(alive), P(no activity within a horizon), the likelihood and the fit."""

from __future__ import annotations

import math

import msgspec
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from scipy import optimize

from streams.core import bgnbd
from streams.core.bgnbd import FitError, Summary
from streams.core.eventtime import day_of, parse_ts
from streams.core.policy import ChurnModel, Policy
from streams.offline.fit import activity_days, summaries

from .pulse_testkit import BASE, PROPERTY, at, ev, purchase, run

PAPER = ChurnModel(r=0.243, alpha=4.414, a=0.793, b=2.426)
WITH_MODEL = Policy(churn_model=PAPER)
TODAY = day_of(BASE)


def p(x: float, t_x: float, T: float, model: ChurnModel = PAPER) -> float:
    return bgnbd.p_alive(model, x, t_x, T)


@pytest.mark.parametrize(
    ("x", "t_x", "T", "expected"),
    [
        pytest.param(7, 29.43, 38.86, 0.642, id="paper-customer-at-calibration-end"),
        pytest.param(7, 29.43, 60, 0.091, id="same-customer-21-weeks-later"),
        pytest.param(2, 30.43, 38.86, 0.7266, id="cdnow-customer-1"),
        pytest.param(1, 1.71, 38.86, 0.2121, id="cdnow-customer-2"),
        pytest.param(0, 0, 38.86, 1.0, id="no-repeat-purchase-is-alive"),
        pytest.param(0, 0, 0, 1.0, id="first-purchase-today"),
    ],
)
def test_p_alive_matches_the_published_figures(
    x: int, t_x: float, T: float, expected: float
) -> None:
    assert p(x, t_x, T) == pytest.approx(expected, abs=5e-4)


def test_p_alive_is_the_closed_form() -> None:
    x, t_x, T = 3, 10.0, 20.0
    m = PAPER
    odds = m.a / (m.b + x - 1) * ((m.alpha + T) / (m.alpha + t_x)) ** (m.r + x)
    assert p(x, t_x, T) == pytest.approx(1 / (1 + odds), rel=1e-14)


models = st.builds(
    ChurnModel,
    r=st.floats(0.01, 20),
    alpha=st.floats(0.01, 100),
    a=st.floats(0.01, 20),
    b=st.floats(0.01, 20),
)


@st.composite
def histories(draw: st.DrawFn) -> tuple[int, float, float, float]:
    """(x, t_x, T, later T) with 0 <= t_x <= T <= later T, up to ten years of weeks."""
    x = draw(st.integers(0, 200))
    T = draw(st.floats(0, 520))
    t_x = draw(st.floats(0, T)) if x > 0 else 0.0
    later = draw(st.floats(T, 1040))
    return x, t_x, T, later


@PROPERTY
@given(model=models, h=histories())
def test_p_alive_is_a_probability_that_silence_only_lowers(
    model: ChurnModel, h: tuple[int, float, float, float]
) -> None:
    x, t_x, T, later = h
    now = p(x, t_x, T, model)
    assert 0.0 <= now <= 1.0
    log_odds = math.log(model.a / (model.b + x - 1)) if x > 0 else -math.inf
    if x > 0:
        log_odds += (model.r + x) * math.log((model.alpha + T) / (model.alpha + t_x))
    if log_odds < 700:  # beyond that P(alive) is below the smallest double and rounds to 0
        assert now > 0.0
    assert p(x, t_x, later, model) <= now
    if x == 0:
        assert now == 1.0


@PROPERTY
@given(model=models, h=histories(), step=st.floats(0.001, 0.5))
def test_the_rescore_day_is_the_first_day_p_alive_fell_by_the_step(
    model: ChurnModel, h: tuple[int, float, float, float], step: float
) -> None:
    x, _, _, _ = h
    first, last, end = TODAY, TODAY + int(h[1] * 7), TODAY + int(h[2] * 7)
    summary = bgnbd.summary_from_days(x + 1, first, last, end)
    day = bgnbd.day_p_alive_falls(model, first, summary, step)
    now = p(*summary, model)
    if x == 0 or now - step <= 0:
        assert day is None
        return
    assert day is not None and day > end
    at_day = bgnbd.summary_from_days(x + 1, first, last, day)
    assert p(*at_day, model) <= now - step + 1e-12
    before = bgnbd.summary_from_days(x + 1, first, last, day - 1)
    if day - 1 > end:
        assert p(*before, model) > now - step - 1e-12


@pytest.mark.parametrize(
    ("count", "first", "last", "end", "expected"),
    [
        pytest.param(1, 0, 0, 0, Summary(0, 0, 0), id="first-purchase-today"),
        pytest.param(1, 0, 0, 272, Summary(0, 0, 272 / 7), id="one-purchase-cdnow-age"),
        pytest.param(3, 0, 213, 272, Summary(2, 213 / 7, 272 / 7), id="cdnow-customer-1"),
        pytest.param(2, 5, 12, 10, Summary(1, 1, 1), id="end-before-last-is-the-last"),
    ],
)
def test_summary_from_purchase_days(
    count: int, first: int, last: int, end: int, expected: Summary
) -> None:
    assert bgnbd.summary_from_days(count, first, last, end) == pytest.approx(expected)


def test_state_summary_counts_distinct_purchase_days_in_weeks() -> None:
    state, _, _ = run(
        [
            purchase(at(days=0, hours=9), 1000),
            purchase(at(days=0, hours=20), 500),  # same UTC day: not a repeat purchase
            ev(at(days=3), "page_view"),
            purchase(at(days=7, hours=1), 700),
            purchase(at(days=14, hours=23), 300),
        ]
    )
    assert state is not None
    assert bgnbd.state_summary(state, at(days=28, hours=12)) == Summary(2, 2.0, 4.0)


def test_state_summary_is_none_without_purchases() -> None:
    state, _, _ = run([ev(at(days=0)), ev(at(days=2), "page_view")])
    assert state is not None and bgnbd.state_summary(state, at(days=9)) is None


def _beta(a: float, b: float) -> float:
    return math.gamma(a) * math.gamma(b) / math.gamma(a + b)


def _eq6(params: tuple[float, float, float, float], x: int, t_x: float, T: float) -> float:
    """FHL 2005 eq. 6, transcribed without logs (small x only)."""
    r, alpha, a, b = params
    common = math.gamma(r + x) * alpha**r / math.gamma(r)
    first = _beta(a, b + x) / _beta(a, b) * common / (alpha + T) ** (r + x)
    second = 0.0
    if x > 0:
        second = _beta(a + 1, b + x - 1) / _beta(a, b) * common / (alpha + t_x) ** (r + x)
    return math.log(first + second)


SMALL = (
    np.array([0.0, 1, 2, 5, 0, 3]),
    np.array([0.0, 1.7, 30.4, 20.0, 0, 38.0]),
    np.array([38.9, 38.9, 38.9, 25.0, 10.0, 38.0]),
)


@pytest.mark.parametrize("params", [(0.243, 4.414, 0.793, 2.426), (2.0, 0.5, 3.0, 0.7)])
def test_log_likelihood_is_equation_6(params: tuple[float, float, float, float]) -> None:
    x, t_x, T = SMALL
    expected = sum(_eq6(params, int(xi), ti, Ti) for xi, ti, Ti in zip(x, t_x, T, strict=True))
    assert bgnbd.log_likelihood(params, x, t_x, T) == pytest.approx(expected, rel=1e-12)
    weights = np.array([1.0, 2, 1, 3, 1, 1])
    weighted = sum(
        w * _eq6(params, int(xi), ti, Ti) for w, xi, ti, Ti in zip(weights, x, t_x, T, strict=True)
    )
    assert bgnbd.log_likelihood(params, x, t_x, T, weights) == pytest.approx(weighted, rel=1e-12)
    assert bgnbd.negative_log_likelihood(params, x, t_x, T) == pytest.approx(-expected, rel=1e-12)


def test_the_gradient_is_the_derivative_of_the_likelihood() -> None:
    x, t_x, T = SMALL
    theta = np.log([0.3, 5.0, 0.7, 2.0])
    _, grad = bgnbd._ll_and_grad(theta, x, t_x, T, None)

    def ll(th: np.ndarray) -> float:
        return bgnbd._ll_and_grad(th, x, t_x, T, None)[0]

    assert grad == pytest.approx(optimize.approx_fprime(theta, ll, 1e-7), rel=1e-5, abs=1e-6)


def simulate(model: ChurnModel, n: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Customers drawn from the BG/NBD: Poisson purchases at rate lambda ~ Gamma(r, alpha),
    dropping out after each repeat purchase with probability p ~ Beta(a, b); ages 20-52 weeks."""
    rng = np.random.default_rng(seed)
    lam = rng.gamma(model.r, 1 / model.alpha, n)
    drop = rng.beta(model.a, model.b, n)
    T = rng.uniform(20, 52, n)
    x, t_x = np.zeros(n), np.zeros(n)
    for i in range(n):
        t = 0.0
        while True:
            t += rng.exponential(1 / lam[i])
            if t > T[i]:
                break
            x[i] += 1
            t_x[i] = t
            if rng.random() < drop[i]:
                break
    return x, t_x, T


@pytest.mark.parametrize(
    ("truth", "seed"),
    [
        pytest.param(ChurnModel(r=0.5, alpha=4.0, a=0.8, b=2.5), 7, id="moderate"),
        pytest.param(ChurnModel(r=0.243, alpha=4.414, a=0.793, b=2.426), 11, id="cdnow-like"),
        pytest.param(ChurnModel(r=2.0, alpha=10.0, a=1.5, b=6.0), 3, id="frequent-buyers"),
    ],
)
def test_fit_recovers_the_parameters_of_simulated_customers(truth: ChurnModel, seed: int) -> None:
    x, t_x, T = simulate(truth, 20_000, seed)
    res = bgnbd.fit(x, t_x, T)
    got = res.model
    for name in ("r", "alpha", "a", "b"):
        assert getattr(got, name) == pytest.approx(getattr(truth, name), rel=0.2), name
    # The fit is a maximum: no worse than the truth on the same data.
    true_ll = bgnbd.log_likelihood((truth.r, truth.alpha, truth.a, truth.b), x, t_x, T)
    assert res.log_likelihood >= true_ll
    assert res.customers == 20_000
    assert res.repeat_purchases == int(x.sum())
    assert res.repeat_customers == int((x > 0).sum())


def test_fit_scales_alpha_with_the_time_unit_and_nothing_else() -> None:
    x, t_x, T = simulate(ChurnModel(r=0.5, alpha=4.0, a=0.8, b=2.5), 3_000, 5)
    weeks = bgnbd.fit(x, t_x, T).model
    days = bgnbd.fit(x, t_x * 7, T * 7).model
    assert days.alpha == pytest.approx(weeks.alpha * 7, rel=1e-5)
    for name in ("r", "a", "b"):
        assert getattr(days, name) == pytest.approx(getattr(weeks, name), rel=1e-5)


@pytest.mark.parametrize(
    ("x", "t_x", "T", "message"),
    [
        pytest.param([], [], [], "no customers", id="empty"),
        pytest.param([0, 0], [0, 0], [5, 9], "no customer made a repeat purchase", id="no-repeat"),
        pytest.param([1, 2], [6, 1], [5, 9], "t_x <= T", id="last-after-now"),
        pytest.param([0, 2], [1, 1], [5, 9], "t_x = 0", id="recency-without-repeat"),
        pytest.param([1, -1], [1, 0], [5, 9], "x >= 0", id="negative-count"),
        pytest.param([1, 2], [1, 1], [5], "one length", id="ragged"),
        pytest.param([1, 2], [1, math.nan], [5, 9], "finite", id="nan"),
    ],
)
def test_fit_rejects_unusable_data(
    x: list[float], t_x: list[float], T: list[float], message: str
) -> None:
    with pytest.raises(FitError, match=message):
        bgnbd.fit(x, t_x, T)


def test_fit_without_visible_dropout_has_no_finite_maximum() -> None:
    # Everyone buys every week to the end: nothing in the data bounds the dropout rate from 0.
    n = 200
    T = np.full(n, 30.0)
    with pytest.raises(FitError, match="no finite maximum"):
        bgnbd.fit(np.full(n, 30.0), T.copy(), T)


# Per-user summaries from a history (what `pulse fit` reads), counted as the engine counts.


def _record(user: str, ts: str, type: str = "purchase", n: int = 0) -> tuple[bytes, bytes]:
    doc = {"event_id": f"{user}-{ts}-{n}", "user_id": user, "type": type, "ts": ts}
    return user.encode(), msgspec.json.encode(doc)


def test_history_summaries_count_distinct_active_days_to_the_end_day() -> None:
    records = [
        _record("u1", "1997-01-01T10:00:00Z"),
        _record("u1", "1997-01-01T18:00:00Z", n=1),  # same day
        _record("u1", "1997-01-18T00:00:00Z"),
        _record("u1", "1997-01-20T00:00:00Z", "points_earned"),  # passive: not activity
        _record("u1", "1997-10-02T00:00:00Z"),  # after the calibration end
        _record("u2", "1997-09-30T23:59:59Z"),  # first purchase on the end day: T = 0
        _record("u3", "1997-12-01T00:00:00Z"),  # first purchase after the end: not a customer
        (b"u4", b"{not json"),
    ]
    collected = activity_days(records, ("points_earned",), now_ms=BASE)
    assert collected.skipped == {"invalid_json": 1}
    assert collected.records == len(records)
    end = day_of(parse_ts("1997-09-30T12:00:00Z"))
    got = summaries(collected, end)
    assert got == {"u1": Summary(1, 17 / 7, 272 / 7), "u2": Summary(0, 0, 0)}
