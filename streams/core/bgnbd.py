"""The BG/NBD model (Fader, Hardie & Lee 2005): its likelihood, the fit, and P(alive).

Pure: numbers in, numbers out. A customer is summarised as (x, t_x, T) in weeks: x repeat
purchases, t_x the age at the last purchase, T the age now, ages counted from the first purchase.

How Pulse's state maps onto that summary. The state keeps the number of distinct UTC days with a
purchase and the first and last of them (`UserState.purchase_days`, `first_purchase_day`,
`last_purchase_day`). Then

    x   = purchase_days - 1                          (repeat purchase *days*)
    t_x = (last_purchase_day - first_purchase_day) / 7
    T   = (day_of(now) - first_purchase_day) / 7

which is what `lifetimes.utils.summary_data_from_transaction_data(..., freq="D")` gives, divided
by 7 (its T counts whole days from the first purchase day to the observation end day). Several
purchases on one day count once, as in Fader and Hardie's CDNOW data set: on CDNOW_sample.txt with
the calibration ending 1997-09-30 this reproduces their published summary exactly in x and to
their two printed decimals in t_x and T (1997-01-01 to 1997-09-30 is 272 days, T = 38.86 weeks).
Because T moves in whole days, P(alive) changes at UTC midnight, not continuously.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, NamedTuple

from streams.core.eventtime import day_of
from streams.core.state import UserState

if TYPE_CHECKING:
    import numpy as np
    import numpy.typing as npt

    Array = npt.NDArray[np.float64]

# numpy and scipy are imported inside the fitting functions: the online path (facts -> p_alive)
# is plain `math`, and importing scipy.optimize would add about 0.6 s to every process that
# imports the core (worker, API, CLI, tests).
DAYS_PER_WEEK = 7.0
# Log-parameters are kept within exp(+-_LOG_BOUND): a fit that ends on a bound has no finite
# maximum (e.g. nobody ever drops out) and is reported as an error rather than returned.
_LOG_BOUND = 18.0


class Params(NamedTuple):
    """The four BG/NBD parameters; time unit weeks."""

    r: float
    alpha: float
    a: float
    b: float


class Summary(NamedTuple):
    """One customer's sufficient statistics: repeat purchases, age at last purchase, age now."""

    x: float
    t_x: float
    T: float


class FitError(ValueError):
    """The data cannot be fitted (empty, inconsistent, or no finite maximum); says which."""


@dataclass(frozen=True)
class FitResult:
    """A fitted model with the figures that go into the parameters file."""

    model: Params
    log_likelihood: float
    customers: int
    repeat_customers: int
    repeat_purchases: int
    iterations: int


def summary_from_days(purchase_days: int, first_day: int, last_day: int, end_day: int) -> Summary:
    """The (x, t_x, T) summary in weeks of a customer seen on `purchase_days` distinct days.

    Days are UTC day numbers; `end_day` is the day the observation ends (inclusive). An end
    before the last purchase is taken as the last purchase day (T is never below t_x).
    """
    if purchase_days < 1:
        raise ValueError("a customer in the BG/NBD has at least the first purchase")
    end = max(end_day, last_day)
    return Summary(
        x=float(purchase_days - 1),
        t_x=(last_day - first_day) / DAYS_PER_WEEK,
        T=(end - first_day) / DAYS_PER_WEEK,
    )


def state_summary(state: UserState, now_ms: int) -> Summary | None:
    """The summary of a user's purchases as of `now_ms`; None if they never purchased."""
    first, last = state.first_purchase_day, state.last_purchase_day
    if state.purchase_days < 1 or first is None or last is None:
        return None
    return summary_from_days(state.purchase_days, first, last, day_of(now_ms))


def p_alive(model: Params, x: float, t_x: float, T: float) -> float:
    """P(the customer is still active) given (x, t_x, T) in the model's unit (weeks).

    1 / (1 + a/(b+x-1) * ((alpha+T)/(alpha+t_x))^(r+x)) for x > 0, and 1 for x = 0 (the model
    lets a customer drop out only right after a repeat purchase). Computed on the log-odds so
    that long silences give a tiny number instead of an overflow.
    """
    if x <= 0:
        return 1.0
    r, alpha, a, b = model.r, model.alpha, model.a, model.b
    log_odds = math.log(a / (b + x - 1)) + (r + x) * (math.log(alpha + T) - math.log(alpha + t_x))
    if log_odds >= 0:
        e = math.exp(-log_odds)
        return e / (1.0 + e)
    return 1.0 / (1.0 + math.exp(log_odds))


def p_no_activity(model: Params, x: float, t_x: float, T: float, h: float) -> float:
    """P(no purchase in the next `h` | x, t_x, T): the chance the customer has dropped out, plus
    the chance an active customer makes none in `h` (all in weeks). For x = 0 only the second.

    1 - PA + PA * ((alpha+T)/(alpha+T+h))^(r+x), PA = P(alive). For fixed (x, t_x) it never
    decreases as T grows (PA falls and the second factor rises), which is what lets the engine
    solve for the moment it crosses a threshold instead of polling.
    """
    return p_no_activity_and_alive(model, x, t_x, T, h)[0]


def p_no_activity_and_alive(
    model: Params, x: float, t_x: float, T: float, h: float
) -> tuple[float, float]:
    """(`p_no_activity`, `p_alive`) in one pass: the engine takes both at every evaluation."""
    r, alpha = model.r, model.alpha
    pa = p_alive(model, x, t_x, T)
    quiet = math.exp((r + x) * (math.log(alpha + T) - math.log(alpha + T + h)))
    return 1.0 - pa + pa * quiet, pa


def day_p_alive_falls(
    model: Params, first_day: int, summary: Summary, step: float = 0.01
) -> int | None:
    """The first UTC day after `summary`'s end on which P(alive) is `step` or more below its
    value there, if the customer stays silent; None when it cannot fall that far (x = 0, or it
    is already within `step` of 0).

    For re-scoring on a timer: silence alone lowers P(alive), and this is the next moment at
    which the score moved enough to matter. Inverts the odds
    a/(b+x-1) * ((alpha+T)/(alpha+t_x))^(r+x) = 1/P - 1 for T.
    """
    x, t_x, T = summary
    if x <= 0 or step <= 0:
        return None
    target = p_alive(model, x, t_x, T) - step
    if target <= 0:
        return None
    r, alpha, a, b = model.r, model.alpha, model.a, model.b
    log_growth = (math.log(1 / target - 1) - math.log(a / (b + x - 1))) / (r + x)
    t_star = (alpha + t_x) * math.exp(log_growth) - alpha
    end_day = first_day + round(T * DAYS_PER_WEEK)
    return max(first_day + math.ceil(t_star * DAYS_PER_WEEK), end_day + 1)


def log_likelihood(
    params: tuple[float, float, float, float] | Array,
    x: Array,
    t_x: Array,
    T: Array,
    weights: Array | None = None,
) -> float:
    """The total BG/NBD log-likelihood of the summaries (FHL 2005, eq. 6) at (r, alpha, a, b)."""
    import numpy as np

    ll, _ = _ll_and_grad(np.log(np.asarray(params, dtype=float)), x, t_x, T, weights)
    return ll


def negative_log_likelihood(
    params: tuple[float, float, float, float] | Array,
    x: Array,
    t_x: Array,
    T: Array,
    weights: Array | None = None,
) -> float:
    """Minus `log_likelihood`: what the fit minimises."""
    return -log_likelihood(params, x, t_x, T, weights)


def _ll_and_grad(
    log_params: Array, x: Array, t_x: Array, T: Array, weights: Array | None
) -> tuple[float, Array]:
    """Log-likelihood and its gradient with respect to the log-parameters.

    Per customer, with u = -(r+x) ln(alpha+T) and v = ln(a/(b+x-1)) - (r+x) ln(alpha+t_x):
    ll = lnG(r+x) - lnG(r) + r ln(alpha) + lnB(a, b+x) - lnB(a, b) + ln(e^u + [x>0] e^v).
    The weight of the second term, p = e^v / (e^u + e^v), is 1 - P(alive).
    """
    import numpy as np
    from scipy import special

    r, alpha, a, b = np.exp(log_params)
    w = np.ones_like(x) if weights is None else weights
    # The special functions depend on x alone, which takes few values: evaluate them once per
    # value, weighted by how many customers have it (a fit calls this some 50 times).
    levels, where = np.unique(x, return_inverse=True)
    lw = np.bincount(where.ravel(), weights=w, minlength=levels.size)
    rep = x > 0
    la_T = np.log(alpha + T)
    la_tx = np.log(alpha + t_x)
    u = -(r + x) * la_T
    # For x = 0 the second term is absent; b + x - 1 is only evaluated where x >= 1.
    bx1 = np.where(rep, b + x - 1, 1.0)
    v = np.where(rep, np.log(a / bx1) - (r + x) * la_tx, -np.inf)
    mix = np.logaddexp(u, v)
    p = np.exp(v - mix)
    q = 1.0 - p
    by_level = special.gammaln(r + levels) + special.betaln(a, b + levels)
    n = float(w.sum())
    ll = (
        lw @ by_level
        + n * (r * np.log(alpha) - special.gammaln(r) - special.betaln(a, b))
        + w @ mix
    )
    dig_ab_x = special.digamma(a + b + levels)
    dr = (
        lw @ special.digamma(r + levels)
        + n * (np.log(alpha) - special.digamma(r))
        - w @ (q * la_T + p * la_tx)
    )
    dalpha = n * r / alpha - w @ ((r + x) * (q / (alpha + T) + p / (alpha + t_x)))
    dab = n * special.digamma(a + b) - lw @ dig_ab_x
    da = dab + (w @ p) / a
    db = (
        dab
        + lw @ special.digamma(b + levels)
        - n * special.digamma(b)
        - w @ np.where(rep, p / bx1, 0.0)
    )
    grad = np.array([dr * r, dalpha * alpha, da * a, db * b])
    return float(ll), grad


def _check(x: Array, t_x: Array, T: Array) -> None:
    import numpy as np

    if not (x.shape == t_x.shape == T.shape) or x.ndim != 1:
        raise FitError("x, t_x and T must be 1-d arrays of one length")
    if x.size == 0:
        raise FitError("no customers to fit")
    if not (np.isfinite(x).all() and np.isfinite(t_x).all() and np.isfinite(T).all()):
        raise FitError("x, t_x and T must be finite")
    if (x < 0).any() or (t_x < 0).any() or (t_x > T).any():
        raise FitError("need x >= 0 and 0 <= t_x <= T for every customer")
    if (t_x[x == 0] != 0).any():
        raise FitError("a customer without repeat purchases must have t_x = 0")
    if not (x > 0).any():
        raise FitError(
            "no customer made a repeat purchase: the data say nothing about purchase rates or "
            "dropout (use a longer calibration period)"
        )


def _starts(x: Array, T: Array, w: Array) -> list[Array]:
    """Starting points on the log scale, the first from the observed repeat rate.

    Time is rescaled to mean T = 1 before fitting, so alpha starts near 1 / rate.
    """
    import numpy as np

    rate = max(float(w @ x) / max(float(w @ T), 1e-9), 1e-6)
    return [
        np.log([1.0, 1.0 / rate, 1.0, 1.0]),
        np.log([0.5, 0.5 / rate, 0.5, 2.0]),
        np.log([2.0, 2.0 / rate, 2.0, 0.5]),
    ]


def fit(x: npt.ArrayLike, t_x: npt.ArrayLike, T: npt.ArrayLike) -> FitResult:
    """Maximum-likelihood (r, alpha, a, b) for customers summarised as (x, t_x, T).

    Optimises the log-parameters (so they stay positive) with L-BFGS-B and the exact gradient,
    from a few starting points, on time rescaled to mean age 1 (alpha is a time scale; the
    other parameters do not depend on the unit). Identical summaries are pooled with weights.
    Raises FitError when the data are unusable or the likelihood has no finite maximum.
    """
    import numpy as np
    from scipy import optimize

    xs = np.asarray(x, dtype=float)
    txs = np.asarray(t_x, dtype=float)
    Ts = np.asarray(T, dtype=float)
    _check(xs, txs, Ts)
    rows, counts = np.unique(np.column_stack([xs, txs, Ts]), axis=0, return_counts=True)
    ux, utx, uT = rows[:, 0], rows[:, 1], rows[:, 2]
    w = counts.astype(float)
    scale = float(w @ uT) / float(w.sum()) or 1.0
    stx, sT = utx / scale, uT / scale
    n = float(w.sum())

    def objective(theta: Array) -> tuple[float, Array]:
        ll, grad = _ll_and_grad(theta, ux, stx, sT, w)
        return -ll / n, -grad / n

    best: optimize.OptimizeResult | None = None
    for start in _starts(ux, sT, w):
        res = optimize.minimize(
            objective,
            start,
            jac=True,
            method="L-BFGS-B",
            bounds=[(-_LOG_BOUND, _LOG_BOUND)] * 4,
            options={"maxiter": 2000, "ftol": 1e-15, "gtol": 1e-10},
        )
        if np.isfinite(res.fun) and (best is None or res.fun < best.fun):
            best = res
    if best is None:
        raise FitError("the likelihood could not be evaluated at any starting point")
    theta = np.asarray(best.x, dtype=float)
    at_bound = np.abs(theta) >= _LOG_BOUND - 1e-6
    if at_bound.any():
        names = [nm for nm, hit in zip(("r", "alpha", "a", "b"), at_bound, strict=True) if hit]
        raise FitError(
            f"no finite maximum: {', '.join(names)} ran to the edge of the search range "
            "(too few repeat purchases or no visible dropout in this history)"
        )
    r, alpha_scaled, a, b = (float(v) for v in np.exp(theta))
    model = Params(r=r, alpha=alpha_scaled * scale, a=a, b=b)
    ll = log_likelihood((model.r, model.alpha, model.a, model.b), ux, utx, uT, w)
    return FitResult(
        model=model,
        log_likelihood=ll,
        customers=int(n),
        repeat_customers=int(w[ux > 0].sum()),
        repeat_purchases=int(round(float(w @ ux))),
        iterations=int(best.nit),
    )
