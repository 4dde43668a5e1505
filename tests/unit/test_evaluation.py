"""Outcome evaluation: precision, recall and lead time against a fixed-silence baseline."""

from __future__ import annotations

from streams.core.eventtime import DAY_MS
from streams.core.outputs import churn_warning, tier_changed
from streams.offline.evaluation import evaluate

D = DAY_MS
H = 60


def warn(user: str, day: float, tier: str = "bronze"):  # type: ignore[no-untyped-def]
    return churn_warning(user, int(day * D), "silence_exceeds_normal", 0.5, "active", tier, {})


def test_precision_recall_and_lead_time() -> None:
    activity = {
        "gone": [0, 1 * D, 2 * D],  # silent from day 2 to the end (day 200): churned
        "back": [0, 10 * D, 40 * D],  # a 30-day gap: not a churn
        "late": [150 * D],  # silent for 50 days only when the history ends: censored
        "missed": [0, 100 * D],  # churned after day 100, never warned
    }
    outputs = [warn("gone", 5), warn("back", 13), warn("late", 160)]
    result = evaluate(
        outputs, activity, 200 * D, horizon_days=H, baseline_days=14, lowest_tier="bronze"
    )
    pulse = result["pulse"]["overall"]
    assert (pulse["warned"], pulse["true_positives"], pulse["precision"]) == (2, 1, 0.5)
    # churns: gone (after day 2), back (after day 40), missed twice (a 100-day gap, then the
    # silence after day 100)
    assert (pulse["churned"], pulse["caught"]) == (4, 1)
    assert pulse["recall"] == 0.25
    assert pulse["lead_time_days"]["median"] == 3.0
    base = result["baseline"]["overall"]
    # 14 days into every longer silence: gone@16, back@24 (back on day 40: wrong), back@54,
    # late@164 (censored), missed@14, missed@114
    assert base["warned"] == 5 and base["true_positives"] == 4
    assert base["caught"] == 4 and base["lead_time_days"]["median"] == 14.0
    assert result["baseline"]["rule"] == "silent 14 days"


def test_per_tier_uses_the_tier_at_the_time() -> None:
    activity = {"vip": [0, 1 * D], "low": [0]}
    outputs = [
        tier_changed("vip", 0, None, "gold", "initial", "first_seen", 600, 500),
        warn("vip", 4, "gold"),
        warn("low", 3),
    ]
    result = evaluate(
        outputs, activity, 100 * D, horizon_days=H, baseline_days=14, lowest_tier="bronze"
    )
    per_tier = result["pulse"]["per_tier"]
    assert per_tier["gold"]["warned"] == 1 and per_tier["gold"]["churned"] == 1
    assert per_tier["bronze"]["warned"] == 1
    assert result["baseline"]["per_tier"]["gold"]["warned"] == 1


def test_no_warnings_gives_no_precision() -> None:
    result = evaluate(
        [], {"u": [0]}, 10 * D, horizon_days=H, baseline_days=14, lowest_tier="bronze"
    )
    assert result["pulse"]["overall"]["precision"] is None
    assert result["pulse"]["overall"]["churned"] == 0
