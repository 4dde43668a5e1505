"""Churn-risk rules: abnormal silence, a sharp activity drop, and the risk score."""

from __future__ import annotations

from typing import Any

from streams.facts import Facts
from streams.policy import Policy


class WarningReason:
    SILENCE = "silence_exceeds_normal"
    ACTIVITY_DROP = "activity_drop"


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
    if f.active_days_30d < policy.drop_min_active_days_30d:
        return False
    rate7, rate30 = _rates(f)
    ratio = policy.drop_recover_ratio if in_episode else policy.drop_ratio
    return rate7 < ratio * rate30


def risk_score(f: Facts, policy: Policy) -> float:
    """Risk in [0, 1]: combines how far the silence has gone toward dormancy and the drop.

    1 - (1 - s)(1 - d), where s = silence / dormant_after (capped at 1) and d = 1 - rate7/rate30
    (0 when the rate did not fall, or with too little history to have a rate).
    Either signal alone can raise the score; both compound.
    """
    s = min(1.0, f.silence_days / policy.dormant_after_days)
    rate7, rate30 = _rates(f)
    enough_history = f.active_days_30d >= policy.drop_min_active_days_30d
    d = max(0.0, 1.0 - rate7 / rate30) if enough_history else 0.0
    return round(1.0 - (1.0 - s) * (1.0 - d), 4)


def warning_figures(f: Facts) -> dict[str, Any]:
    """The figures that triggered a warning, as they go on the wire."""
    return {
        "silence_days": round(f.silence_days, 3),
        "typical_gap_days": f.typical_gap_days,
        "threshold_days": round(f.threshold_ms / 86_400_000, 3),
        "active_days_7d": f.active_days_7d,
        "active_days_30d": f.active_days_30d,
    }
