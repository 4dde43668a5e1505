"""Holdout assignment: deterministic per user, close to the configured fraction, salt-driven."""

from __future__ import annotations

import math
import os
import subprocess
import sys

import pytest
from hypothesis import given
from hypothesis import strategies as st

from streams.core.holdout import Group, assign_group, holdout_draw
from streams.core.policy import Policy

IDS = [f"user-{i}" for i in range(100_000)]
PINNED = [0.836511, 0.492161, 0.344079]  # draws of u-1, alice, user-42 with salt pulse-recall


def holdout_count(policy: Policy) -> int:
    return sum(assign_group(u, policy) == Group.HOLDOUT for u in IDS)


@pytest.mark.parametrize("fraction", [0.1, 0.02, 0.5])
def test_the_holdout_share_of_100k_ids_is_within_the_binomial_bound(fraction: float) -> None:
    n = len(IDS)
    got = holdout_count(Policy(holdout_fraction=fraction))
    # 5 standard deviations of Binomial(n, fraction): a correct hash fails this about once in
    # 3.5 million runs; a biased one (e.g. 1% off at 0.1) fails it for sure.
    bound = 5 * math.sqrt(n * fraction * (1 - fraction))
    assert abs(got - n * fraction) <= bound, (got, n * fraction, bound)


def test_the_default_policy_holds_out_a_tenth() -> None:
    assert Policy().holdout_fraction == 0.1
    assert abs(holdout_count(Policy()) - 10_000) <= 5 * math.sqrt(100_000 * 0.1 * 0.9)


def test_assignment_is_the_same_in_every_process() -> None:
    # Pinned values: a change of hash, encoding or salt layout would reshuffle live groups.
    assert [round(holdout_draw("pulse-recall", u), 6) for u in ("u-1", "alice", "user-42")] == (
        PINNED
    )
    code = (
        "from streams.core.holdout import holdout_draw;"
        "print([round(holdout_draw('pulse-recall', u), 6) for u in ('u-1', 'alice', 'user-42')])"
    )
    for seed in ("0", "12345"):
        out = subprocess.run(
            [sys.executable, "-c", code],
            env={**os.environ, "PYTHONHASHSEED": seed},
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        assert out.strip() == str(PINNED)


def test_a_new_salt_reshuffles_the_groups_at_the_same_fraction() -> None:
    a = Policy(holdout_salt="campaign-a")
    b = Policy(holdout_salt="campaign-b")
    ga = [assign_group(u, a) for u in IDS[:20_000]]
    gb = [assign_group(u, b) for u in IDS[:20_000]]
    moved = sum(x != y for x, y in zip(ga, gb, strict=True))
    # Independent draws: a user changes group with probability 2 f (1 - f) = 0.18.
    assert abs(moved - 0.18 * 20_000) <= 5 * math.sqrt(20_000 * 0.18 * 0.82)
    assert abs(gb.count(Group.HOLDOUT) - 2_000) <= 5 * math.sqrt(20_000 * 0.1 * 0.9)


def test_raising_the_fraction_only_moves_treated_users_into_the_holdout() -> None:
    small, large = Policy(holdout_fraction=0.05), Policy(holdout_fraction=0.2)
    for u in IDS[:10_000]:
        if assign_group(u, small) == Group.HOLDOUT:
            assert assign_group(u, large) == Group.HOLDOUT


def test_no_holdout_at_fraction_zero() -> None:
    assert holdout_count(Policy(holdout_fraction=0)) == 0


@given(user=st.text(min_size=1, max_size=128), salt=st.text(min_size=1, max_size=128))
def test_draws_are_uniform_numbers_in_the_unit_interval_and_repeatable(
    user: str, salt: str
) -> None:
    d = holdout_draw(salt, user)
    assert 0 <= d < 1
    assert holdout_draw(salt, user) == d
