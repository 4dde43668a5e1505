"""The documented example policy file is exactly the built-in defaults."""

from __future__ import annotations

from pathlib import Path

from streams.core.policy import Policy, load_policy

EXAMPLE = Path(__file__).parents[2] / "deploy" / "policy.example.toml"


def test_example_policy_file_matches_the_defaults() -> None:
    assert load_policy(EXAMPLE) == Policy()
