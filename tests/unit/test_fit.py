"""What `pulse fit` learns besides BG/NBD: the empirical curves, the stage thresholds and the
warning level, each from the calibration period only."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from streams.core.bgnbd import Params
from streams.core.policy import ChurnModel, load_policy
from streams.offline.empirical import MIN_GAPS, curve, empirical_curves
from streams.offline.fit import fit_history, write_params, write_policy
from streams.offline.thresholds import (
    LevelChoice,
    choose_level,
    choose_window,
    return_share,
    stage_thresholds,
    warning_windows,
)

PAPER = Params(0.243, 4.414, 0.793, 2.426)


@pytest.mark.parametrize(
    ("gaps", "horizon", "want"),
    [
        # Every silence ends after 5 days: none within 2 days of its start. Later the return
        # is near (at 3 days silent, certain within 2), but the curve may not fall.
        ([(5, True)] * 10, 2, [1.0, 1.0, 1.0, 1.0]),
        # Half end at 1 day, half at 10: after 0 days, P(no return within 3) = S(3)/S(0) = 0.5.
        ([(1, True)] * 5 + [(10, True)] * 5, 3, [0.5, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0]),
        # Censored silences count as still silent while observed.
        ([(2, True), (8, False)], 2, [0.5, 0.5, 1.0, 1.0, 1.0, 1.0, 1.0]),
    ],
)
def test_the_curve_is_kaplan_meier_survival_over_the_horizon(
    gaps: list[tuple[int, bool]], horizon: int, want: list[float]
) -> None:
    assert curve(gaps, horizon) == want


def test_the_curve_never_falls_as_silence_grows() -> None:
    gaps = [(d, True) for d in (1, 2, 2, 3, 9, 12, 30, 31, 33, 60)] + [(90, False)] * 3
    values = curve(gaps, 14)
    assert all(b >= a for a, b in zip(values, values[1:], strict=False))
    ChurnModel(empirical=({"min_active_days": 1, "p_churn": values},))  # type: ignore[arg-type]


def test_strata_with_too_few_silences_borrow_the_curve_below() -> None:
    # 40 users active twice, 3 users active five times: the 5+ stratum has too few gaps.
    days = {f"u{i}": {0, 10} for i in range(40)}
    days |= {f"v{i}": {0, 3, 6, 9, 12} for i in range(3)}
    curves = empirical_curves(days, end_day=100, horizon_days=30)
    assert [c["min_active_days"] for c in curves] == [1, 2]
    assert len(days) * 1 < MIN_GAPS * 2


def test_return_share_falls_with_silence_and_stages_follow_it() -> None:
    users = [(0, 0)] * 50 + [(3, 60)] * 30 + [(8, 150)] * 20
    shares = [return_share(PAPER, users, s, 365) for s in (30, 90, 200, 400)]
    assert shares == sorted(shares, reverse=True)
    stages = stage_thresholds(PAPER, users, 60)
    assert 60 <= stages.dormant_after_days < stages.churned_after_days
    assert (
        stages.churned_return
        <= 0.15
        < return_share(PAPER, users, stages.churned_after_days - 1, 365)
    )
    repeat = [u for u in users if u[0] > 0]
    assert return_share(PAPER, repeat, stages.dormant_after_days, 60) <= 0.20


@pytest.mark.parametrize(
    ("points", "level", "met"),
    [
        ({0.6: (0.6, 0.8, 50), 0.7: (0.7, 0.62, 50), 0.8: (0.8, 0.4, 50)}, 0.7, True),
        ({0.6: (0.6, 0.8, 30), 0.7: (0.7, 0.7, 40)}, 0.6, False),  # lead never long enough
        ({0.6: (0.6, 0.5, 50), 0.7: (0.7, 0.5, 50)}, 0.7, False),  # ties on recall: higher
        ({0.6: (None, None, None), 0.7: (0.7, 0.61, 45)}, 0.7, True),
        ({0.6: (None, None, None), 0.9: (None, None, None)}, 0.7, False),  # nothing to judge
    ],
)
def test_the_warning_level_is_the_highest_meeting_the_targets(
    points: dict[float, tuple[float | None, float | None, float | None]], level: float, met: bool
) -> None:
    choice = choose_level(points, target_recall=0.6, min_lead_days=45)
    assert (choice.level, choice.met) == (level, met)


def test_the_window_kept_is_the_most_precise_moment_that_meets_the_targets() -> None:
    crossing = {"min_silence_days": 7, "max_silence_days": None}
    windows = warning_windows(7)
    assert windows[0] == crossing and [w["max_silence_days"] for w in windows] == [None, 7, 10, 14]
    assert [w["max_silence_days"] for w in warning_windows(10)] == [None, 10, 14]
    met = [
        LevelChoice(0.71, True, 0.65, 0.6, 52),
        LevelChoice(0.58, True, 0.61, 0.6, 52),
        LevelChoice(0.6, True, 0.64, 0.6, 45),
        LevelChoice(0.6, True, 0.62, 0.6, 45),
    ]
    chosen = choose_window([(w, c, i) for i, (w, c) in enumerate(zip(windows, met, strict=True))])
    assert chosen[2] == 2  # 10 days: the crossing is more precise, but a moment is preferred
    missed = [LevelChoice(0.71, True, 0.65, 0.6, 52)] + [
        LevelChoice(0.5, False, 0.5, 0.4, 52) for _ in range(3)
    ]
    chosen = choose_window(
        [(w, c, i) for i, (w, c) in enumerate(zip(windows, missed, strict=True))]
    )
    assert chosen[2] == 0  # no moment meets the targets: the crossing


def _history(path: Path) -> Path:
    """Weekly buyers who stop, monthly buyers who go on, one-time buyers: 1997."""
    lines = []
    for u in range(60):
        last = 20 + (u % 10) * 14
        lines += [f"w{u},1997-01-{1 + d:02d}" for d in range(0, 28, 7)]
        lines += [f"w{u},1997-{2 + k:02d}-15" for k in range(last // 30)]
    for u in range(40):
        lines += [f"m{u},1997-{m:02d}-{1 + u % 20:02d}" for m in range(1, 13)]
    lines += [f"o{u},1997-{1 + u % 12:02d}-03" for u in range(80)]
    path.write_text("\n".join(lines) + "\n")
    return path


def test_fit_writes_a_model_the_engine_loads_with_the_stages_it_proposes(tmp_path: Path) -> None:
    from streams.core.eventtime import parse_ts
    from streams.offline.history import CsvMapping

    history = _history(tmp_path / "h.csv")
    mapping = CsvMapping(time="ts", amount="", type="", event_id="", columns=("user_id", "ts"))
    params = fit_history(history, until_ms=parse_ts("1997-10-01T00:00:00Z"), mapping=mapping)
    assert params["calibration_end"] == "1997-09-30"
    assert {"r", "alpha", "a", "b", "empirical", "warn_probability"} <= set(params)
    assert 0.5 <= params["warn_probability"] <= 0.95
    assert params["warn_level_choice"]["levels"]
    out = tmp_path / "model.json"
    write_params(params, out)
    write_policy(params, tmp_path / "model.policy.toml")
    policy = load_policy(None, out)
    assert policy.churn_model is not None
    assert policy.dormant_after_days == params["dormant_after_days"]
    assert (
        load_policy(tmp_path / "model.policy.toml").churned_after_days
        == (params["churned_after_days"])
    )
    assert json.loads(out.read_text())["source"] == "h.csv"


@pytest.mark.parametrize("horizon_days", [30, 45])
def test_a_short_horizon_gets_only_looks_within_it(tmp_path: Path, horizon_days: int) -> None:
    from streams.core.eventtime import parse_ts
    from streams.offline.history import CsvMapping

    history = _history(tmp_path / "h.csv")
    mapping = CsvMapping(time="ts", amount="", type="", event_id="", columns=("user_id", "ts"))
    params = fit_history(
        history, until_ms=parse_ts("1997-10-01T00:00:00Z"), mapping=mapping,
        horizon_days=horizon_days,
    )  # fmt: skip
    looks = params["warn_level_choice"]["late_looks"]
    assert all(c["late_silence_days"] in (None, 21, 30, 45) for c in looks)
    assert all((c["late_silence_days"] or 0) + 1 <= horizon_days for c in looks)
    ChurnModel.model_validate(params)  # whatever it chose, the engine loads it
