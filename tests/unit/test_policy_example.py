"""The documented example policy file is exactly the built-in defaults."""

from __future__ import annotations

from pathlib import Path

from streams.core.policy import Policy, load_policy

EXAMPLE = Path(__file__).parents[2] / "deploy" / "policy.example.toml"


def test_example_policy_file_matches_the_defaults() -> None:
    assert load_policy(EXAMPLE) == Policy()


def test_the_commented_churn_model_loads_once_uncommented(tmp_path: Path) -> None:
    lines = EXAMPLE.read_text().splitlines()
    start = lines.index("# [churn_model]")
    table = [line.removeprefix("# ") for line in lines[start:] if line.startswith("# ")]
    path = tmp_path / "policy.toml"
    path.write_text("\n".join(lines[:start] + table) + "\n")
    model = load_policy(path).churn_model
    assert model is not None
    assert model.min_silence_days == model.max_silence_days == 14
    assert model.warn_probability == 0.71
    assert (model.late_silence_days, model.late_warn_probability) == (30, 0.62)
