"""The policy: defaults, validation with messages that name the field, and loading files."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from streams.core.eventtime import DAY_MS, HOUR_MS
from streams.core.policy import Policy, PolicyError, Tier, days_ms, load_policy


def test_defaults_are_consistent() -> None:
    p = Policy()
    assert p.horizon_days == 90
    assert p.lateness_ms == 48 * HOUR_MS
    assert p.tier_names == ("bronze", "silver", "gold", "platinum")
    assert p.at_risk_ceiling_days < p.dormant_after_days < p.churned_after_days


@pytest.mark.parametrize(("days", "ms"), [(1, DAY_MS), (0.5, DAY_MS // 2), (14, 14 * DAY_MS)])
def test_days_ms(days: float, ms: int) -> None:
    assert days_ms(days) == ms


def test_policy_is_frozen() -> None:
    with pytest.raises(ValidationError):
        Policy().new_user_days = 3


@pytest.mark.parametrize(
    ("fields", "named"),
    [
        pytest.param({"windows_days": ()}, "windows_days", id="no-windows"),
        pytest.param({"windows_days": (0, 7, 30)}, "windows_days", id="zero-window"),
        pytest.param({"windows_days": (30, 7)}, "strictly increasing", id="unsorted-windows"),
        pytest.param({"windows_days": (7, 7, 30)}, "strictly increasing", id="repeated-window"),
        pytest.param({"windows_days": (1, 30, 90)}, "include 7 and 30", id="no-7-day-window"),
        pytest.param({"windows_days": (1, 7, 28)}, "include 7 and 30", id="no-30-day-window"),
        pytest.param({"tier_window_days": 120}, "tier_window_days", id="tier-window-too-long"),
        pytest.param({"tiers": ()}, "first tier", id="no-tiers"),
        pytest.param(
            {"tiers": (Tier(name="a", min_spend=5),)}, "min_spend 0", id="first-tier-not-zero"
        ),
        pytest.param(
            {"tiers": (Tier(name="a", min_spend=0), Tier(name="b", min_spend=0))},
            "strictly increasing min_spend",
            id="tiers-not-increasing",
        ),
        pytest.param(
            {"tiers": (Tier(name="a", min_spend=0), Tier(name="a", min_spend=5))},
            "unique",
            id="duplicate-tier-names",
        ),
        pytest.param(
            {"at_risk_floor_days": 10, "at_risk_ceiling_days": 5},
            "at_risk_floor_days",
            id="floor-above-ceiling",
        ),
        pytest.param({"dormant_after_days": 14}, "dormant_after_days", id="dormant-at-ceiling"),
        pytest.param({"churned_after_days": 30}, "churned_after_days", id="churned-at-dormant"),
        pytest.param(
            {"drop_ratio": 0.5, "drop_recover_ratio": 0.4}, "drop_recover_ratio", id="hysteresis"
        ),
        pytest.param({"new_user_days": 0}, "new_user_days", id="zero-days"),
        pytest.param({"reactivated_days": -1}, "reactivated_days", id="negative-days"),
        pytest.param({"drop_ratio": 1}, "drop_ratio", id="ratio-not-below-1"),
        pytest.param({"allowed_lateness_hours": -1}, "allowed_lateness_hours", id="neg-late"),
        pytest.param({"dedup_capacity": 0}, "dedup_capacity", id="no-dedup"),
        pytest.param({"dedup_capacity": 5000}, "dedup_capacity", id="dedup-too-large"),
        pytest.param({"drop_min_active_days_30d": 31}, "drop_min_active_days_30d", id="min-31"),
        pytest.param({"unknown_knob": 1}, "unknown_knob", id="unknown-field"),
    ],
)
def test_invalid_policies_name_the_problem(fields: dict[str, Any], named: str) -> None:
    with pytest.raises(ValidationError) as info:
        Policy(**fields)
    assert named in str(info.value)


def test_tier_rejects_negative_spend_and_unknown_fields() -> None:
    with pytest.raises(ValidationError, match="min_spend"):
        Tier(name="x", min_spend=-1)
    with pytest.raises(ValidationError, match="colour"):
        Tier.model_validate({"name": "x", "min_spend": 1, "colour": "red"})


# --------------------------------------------------------------------------- load_policy


@pytest.mark.parametrize("path", [None, ""])
def test_no_path_gives_the_defaults(path: str | None) -> None:
    assert load_policy(path) == Policy()


def test_load_toml(tmp_path: Path) -> None:
    f = tmp_path / "policy.toml"
    f.write_text(
        """
new_user_days = 3
windows_days = [7, 30, 60]
tier_window_days = 60
downgrade_grace_days = 0.5

[[tiers]]
name = "free"
min_spend = 0

[[tiers]]
name = "vip"
min_spend = 99.5
""",
        encoding="utf-8",
    )
    p = load_policy(f)
    assert (p.new_user_days, p.windows_days, p.horizon_days) == (3, (7, 30, 60), 60)
    assert p.tiers == (Tier(name="free", min_spend=0), Tier(name="vip", min_spend=99.5))
    assert p.downgrade_grace_days == 0.5
    assert p.churned_after_days == Policy().churned_after_days  # unspecified: the default


def test_load_json(tmp_path: Path) -> None:
    f = tmp_path / "policy.json"
    f.write_text(json.dumps({"allowed_lateness_hours": 1.5, "passive_types": []}))
    p = load_policy(str(f))
    assert (p.lateness_ms, p.passive_types) == (int(1.5 * HOUR_MS), ())


def test_missing_file_is_a_policy_error(tmp_path: Path) -> None:
    with pytest.raises(PolicyError, match="cannot read policy file"):
        load_policy(tmp_path / "absent.toml")


@pytest.mark.parametrize(
    ("name", "text", "match"),
    [
        ("p.toml", "new_user_days = ", "not valid .toml"),
        ("p.json", "{new_user_days: 3}", "not valid .json"),
        ("policy", "= 1", "not valid TOML"),
        ("p.toml", "new_user_days = -3", "new_user_days"),
        ("p.toml", "new_user_days = 'soon'", "new_user_days"),
        ("p.json", '{"dormant_after_days": 90}', "dormant_after_days"),
        ("p.toml", "typo_days = 3", "typo_days"),
        ("p.json", "[1, 2]", "invalid"),
    ],
)
def test_bad_files_are_policy_errors_naming_the_problem(
    tmp_path: Path, name: str, text: str, match: str
) -> None:
    f = tmp_path / name
    f.write_text(text, encoding="utf-8")
    with pytest.raises(PolicyError, match=match) as info:
        load_policy(f)
    assert str(f) in str(info.value)
    assert isinstance(info.value, ValueError)
