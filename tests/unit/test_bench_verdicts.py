"""The benchmark's verdicts: issue 20's ratio targets, each the median over rounds."""

from __future__ import annotations

from typing import Any

import pytest

from bench.__main__ import median_ratios, parse_args
from bench.report import evaluate, render


def _doc(by_round: list[dict[str, float | None]]) -> dict[str, Any]:
    return {
        "config": {"events": 10, "users": 1, "partitions": 1, "seed": 1, "store": "memory://"},
        "machine": {"cpus": 2},
        "timing_method": "t",
        "ratios_by_round": by_round,
        "ratios": median_ratios(by_round),
    }


def _verdict(res: dict[str, Any], key: str) -> dict[str, Any]:
    targets = {t["target"]: t for t in evaluate(res)}
    return next(t for name, t in targets.items() if key in name)


def test_median_over_rounds_skips_missing_values() -> None:
    got = median_ratios(
        [
            {"pulse_view_over_pulse": 0.8, "pulse_group_over_pulse": None},
            {"pulse_view_over_pulse": 1.0, "pulse_group_over_pulse": 1.7},
            {"pulse_view_over_pulse": 0.95, "pulse_group_over_pulse": None},
        ]
    )
    assert got == {"pulse_view_over_pulse": 0.95, "pulse_group_over_pulse": 1.7}
    assert median_ratios([{"pulse_view_over_quix": None}]) == {"pulse_view_over_quix": None}


@pytest.mark.parametrize(
    ("rounds", "verdict"),
    [
        ([0.85, 0.97], "PASS"),  # median 0.91: one round alone would fail
        ([0.85, 0.93], "FAIL"),  # median 0.89
        ([0.95], "PASS"),
        ([0.7, 1.2, 0.89], "FAIL"),  # median 0.89, though the mean is 0.93
    ],
)
def test_view_target_is_judged_on_the_median(rounds: list[float], verdict: str) -> None:
    res = _doc([{"pulse_view_over_pulse": r} for r in rounds])
    t = _verdict(res, "0.9x the view off")
    assert t["verdict"] == verdict
    if len(rounds) > 1:
        assert f"median of {len(rounds)} rounds" in t["shown"]


def test_ratio_targets_and_retired_ones() -> None:
    res = _doc(
        [
            {"pulse_view_over_quix": 0.55, "pulse_group_over_pulse": 1.5, "pulse_over_naive": 3.0},
            {"pulse_view_over_quix": 0.49, "pulse_group_over_pulse": 1.8, "pulse_over_naive": 3.0},
        ]
    )
    assert _verdict(res, "Quix")["verdict"] == "PASS"  # median 0.52
    assert _verdict(res, "two Pulse workers")["verdict"] == "PASS"  # median 1.65
    names = " ".join(t["target"] for t in evaluate(res))
    assert "naive Faust" not in names and "ceiling" not in names
    assert "pulse/naive 3.00x" in render(res)  # still printed, no longer judged


def test_rounds_option() -> None:
    assert parse_args([]).rounds == 2
    assert parse_args(["--rounds", "3"]).rounds == 3
    with pytest.raises(SystemExit):
        parse_args(["--rounds", "0"])
