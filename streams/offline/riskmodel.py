"""The core's churn probability as the evaluation's `RiskModel`: the same functions the engine
decides with (streams/core/risk.py), fed from a user's active days instead of a state."""

from __future__ import annotations

from collections.abc import Sequence

from streams.core.eventtime import day_of
from streams.core.policy import ChurnModel
from streams.core.risk import Stats, late_warning_at, p_churn, warning_at


def rule_text(model: ChurnModel) -> str:
    """The model's warning rule in words, as the report and `pulse fit` state it."""
    level, low, high = model.warn_probability, model.min_silence_days, model.max_silence_days
    if high is not None and high == low:
        text = f"P0 >= {level:g} at {low:g} days of silence"
    elif high is not None:
        text = f"P0 reaches {level:g} between {low:g} and {high:g} days of silence"
    else:
        text = f"P0 reaches {level:g} from {low:g} days of silence"
    if model.late_silence_days is not None and model.late_warn_probability is not None:
        late, late_level = model.late_silence_days, model.late_warn_probability
        text += f", else P0 >= {late_level:g} at {late:g} days (late look)"
    return text


class CoreRisk:
    """Scores and warning times of `model` for users given as their sorted active UTC days."""

    def __init__(self, model: ChurnModel, threshold: float | None = None) -> None:
        self.model = model
        self.threshold = model.warn_probability if threshold is None else threshold
        self.rule = rule_text(model.model_copy(update={"warn_probability": self.threshold}))

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
