"""The core's churn probability as the evaluation's `RiskModel`: the same functions the engine
decides with (streams/core/risk.py), fed from a user's active days instead of a state."""

from __future__ import annotations

from collections.abc import Sequence

from streams.core.eventtime import day_of
from streams.core.policy import ChurnModel
from streams.core.risk import Stats, late_warning_at, p_churn, warning_at


class CoreRisk:
    """Scores and warning times of `model` for users given as their sorted active UTC days."""

    def __init__(self, model: ChurnModel, threshold: float | None = None) -> None:
        self.model = model
        self.threshold = model.warn_probability if threshold is None else threshold

    def score(self, days: Sequence[int], at: int) -> float:
        """P(no activity within the horizon) at epoch ms `at`, `days` the active days so far."""
        return p_churn(self.model, Stats(len(days), days[0], days[-1]), day_of(at))

    def warning_time(self, days: Sequence[int], last_active: int, threshold: float) -> int | None:
        """When the rule at `threshold` warns in the silence after `last_active` (epoch ms):
        the window's level is `threshold`; the model's late look, if any, stays as fitted
        (a higher threshold still never warns sooner, which the curve's simulation uses)."""
        stats = Stats(len(days), days[0], days[-1])
        due = warning_at(self.model, stats, last_active, threshold)
        if due is None:
            return late_warning_at(self.model, stats, last_active)
        return due
