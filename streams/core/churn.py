"""Churn-risk rules: the churn probability crossing the model's level (with a churn model),
abnormal silence (without one), a sharp activity drop, and the risk score."""

from __future__ import annotations

from typing import Any

from streams.core.eventtime import DAY_MS
from streams.core.facts import Facts
from streams.core.policy import Policy
from streams.core.risk import late_look_at, within_window


class WarningReason:
    CHURN_PROBABILITY = "churn_probability"
    SILENCE = "silence_exceeds_normal"
    ACTIVITY_DROP = "activity_drop"


def churn_likely(f: Facts, policy: Policy) -> bool | None:
    """With a churn model: whether the probability of no activity within its horizon has
    reached the model's warning level, after the minimum silence and within the warning
    window (streams.core.risk.within_window), or reached the late level at the model's late
    look. None when the model does not apply (no model, or a user never active): the silence
    rule decides then."""
    model = policy.churn_model
    if model is None or f.p_churn is None or f.warn_from is None or f.last_active is None:
        return None
    if f.warn_from <= f.at and within_window(model, f.last_active, f.at):
        return f.p_churn >= model.warn_probability
    # (The look lies within the horizon: ChurnModel's validation sees to it.)
    late_level = model.late_warn_probability
    return (
        late_level is not None
        and f.at == late_look_at(model, f.last_active)
        and f.p_churn >= late_level
    )


def is_silent(f: Facts) -> bool:
    """Silent for longer than is normal for this user."""
    return f.silence_ms >= f.threshold_ms


def _rates(f: Facts) -> tuple[float, float]:
    return f.active_days_7d / 7, f.active_days_30d / 30


def is_dropping(f: Facts, policy: Policy, *, in_episode: bool) -> bool:
    """The 7-day activity rate fell sharply below the 30-day rate.

    Inside an at-risk episode the user must climb back above the (higher) recovery ratio to
    leave it, so a rate hovering at the threshold does not flap in and out of risk.
    """
    return drops(f.active_days_7d, f.active_days_30d, policy, in_episode=in_episode)


def drops(active_days_7d: int, active_days_30d: int, policy: Policy, *, in_episode: bool) -> bool:
    """`is_dropping` on the two counts it reads (the engine also asks it of days to come)."""
    if active_days_30d < policy.drop_min_active_days_30d:
        return False
    ratio = policy.drop_recover_ratio if in_episode else policy.drop_ratio
    return active_days_7d / 7 < ratio * (active_days_30d / 30)


def risk_score(f: Facts, policy: Policy) -> float:
    """Risk in [0, 1].

    With a churn model (and an active day): the probability of no activity within the model's
    horizon, calibrated on the history it was fitted to (`f.p_churn`, 4 decimals).
    Without one: 1 - (1 - s)(1 - d), where s = silence / dormant_after (capped at 1) and
    d = 1 - rate7/rate30 (0 when the rate did not fall, or with too little history to have a
    rate), read as independent chances of being lost, so either alone raises the score.
    """
    if f.p_churn is not None:
        return round(f.p_churn, 4)
    # The same float operations in the same order as the formula reads (f.silence_days is
    # silence_ms / DAY_MS), so the score is bit for bit what it always was.
    # (Conditional expressions, not min/max: the same results, without a builtin call at every
    # evaluation.)
    s = f.silence_ms / DAY_MS / policy.dormant_after_days
    s = s if s < 1.0 else 1.0
    d = 0.0
    if f.active_days_30d >= policy.drop_min_active_days_30d:  # enough history for a rate
        rate7, rate30 = _rates(f)
        d = 1.0 - rate7 / rate30
        d = d if d > 0.0 else 0.0
    kept = (1.0 - s) * (1.0 - d)
    if kept == 1.0:  # nothing points to a loss (the usual case at an event): round(0.0, 4)
        return 0.0
    return round(1.0 - kept, 4)


def warning_figures(f: Facts) -> dict[str, Any]:
    """The figures that triggered a warning, as they go on the wire.

    `p_churn` and `p_alive` (6 decimals) are there only when a churn model scored the user
    (`p_alive` only from BG/NBD).
    """
    figures: dict[str, Any] = {
        "silence_days": round(f.silence_days, 3),
        "typical_gap_days": f.typical_gap_days,
        "threshold_days": round(f.threshold_ms / 86_400_000, 3),
        "active_days_7d": f.active_days_7d,
        "active_days_30d": f.active_days_30d,
    }
    if f.p_churn is not None:
        figures["p_churn"] = round(f.p_churn, 6)
    if f.p_alive is not None:
        figures["p_alive"] = round(f.p_alive, 6)
    return figures
