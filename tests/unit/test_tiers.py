"""Value tiers: upgrade at once, downgrade only after the grace period."""

from __future__ import annotations

import pytest

from streams.core.policy import Policy, Tier, days_ms
from streams.core.tiers import TierDecision, decide_tier, eligible_tier

from .pulse_testkit import POLICY, at, ev, purchase, run, sweep_in_steps, tier_moves

GRACE = days_ms(POLICY.downgrade_grace_days)  # 14 days
T0 = at(days=50)


@pytest.mark.parametrize(
    ("cents", "tier"),
    [
        (0, "bronze"),
        (9_999, "bronze"),
        (10_000, "silver"),  # thresholds are inclusive
        (49_999, "silver"),
        (50_000, "gold"),
        (199_999, "gold"),
        (200_000, "platinum"),
        (10**12, "platinum"),
    ],
)
def test_eligible_tier(cents: int, tier: str) -> None:
    assert eligible_tier(cents, POLICY) == tier


def test_eligible_tier_compares_cents_exactly_for_fractional_thresholds() -> None:
    policy = Policy(tiers=(Tier(name="basic", min_spend=0), Tier(name="plus", min_spend=19.99)))
    assert eligible_tier(1998, policy) == "basic"
    assert eligible_tier(1999, policy) == "plus"


# (current, pending_since, spend cents, at) -> decision
TABLE = [
    pytest.param(
        "", None, 0, T0, TierDecision("bronze", None, "initial", "first_seen", 0.0), id="initial"
    ),
    pytest.param(
        "",
        None,
        60_000,
        T0,
        TierDecision("gold", None, "initial", "first_seen", 500.0),
        id="initial-big-spender",
    ),
    pytest.param(
        "bronze",
        None,
        60_000,
        T0,
        TierDecision("gold", None, "upgrade", "spend_reached_threshold", 500.0),
        id="upgrade-at-once-skipping-a-tier",
    ),
    pytest.param(
        "silver",
        T0 - days_ms(3),
        60_000,
        T0,
        TierDecision("gold", None, "upgrade", "spend_reached_threshold", 500.0),
        id="upgrade-clears-a-pending-downgrade",
    ),
    pytest.param("gold", None, 50_000, T0, TierDecision("gold", None, None), id="unchanged"),
    pytest.param(
        "gold", None, 10_000, T0, TierDecision("gold", T0, None), id="below-starts-the-grace"
    ),
    pytest.param(
        "gold",
        T0 - GRACE + 1,
        10_000,
        T0,
        TierDecision("gold", T0 - GRACE + 1, None),
        id="still-in-grace",
    ),
    pytest.param(
        "gold",
        T0 - GRACE,
        10_000,
        T0,
        TierDecision("silver", None, "downgrade", "spend_below_threshold_past_grace", 500.0),
        id="downgrade-when-grace-is-over",
    ),
    pytest.param(
        "gold",
        T0 - GRACE,
        0,
        T0,
        TierDecision("bronze", None, "downgrade", "spend_below_threshold_past_grace", 500.0),
        id="downgrade-to-the-tier-now-eligible",
    ),
    pytest.param(
        "gold",
        T0 - days_ms(3),
        50_000,
        T0,
        TierDecision("gold", None, None),
        id="recovery-cancels-the-pending-downgrade",
    ),
]


@pytest.mark.parametrize(("current", "pending", "cents", "when", "decision"), TABLE)
def test_decide_tier(
    current: str, pending: int | None, cents: int, when: int, decision: TierDecision
) -> None:
    assert decide_tier(current, pending, cents, when, POLICY) == decision


def test_zero_grace_downgrades_at_once() -> None:
    policy = Policy(downgrade_grace_days=0)
    assert decide_tier("gold", None, 0, T0, policy).direction == "downgrade"


def test_a_tier_removed_from_the_policy_is_re_tiered_at_once() -> None:
    d = decide_tier("diamond", None, 10_000, T0, POLICY)
    assert (d.tier, d.pending_since) == ("silver", None)
    assert d.direction is not None


# --------------------------------------------------------------------------- through the engine


def test_first_event_gives_the_initial_tier() -> None:
    _, outs, _ = run([ev(at(hours=9))])
    assert tier_moves(outs) == [(None, "bronze", "initial", at(hours=9))]


def test_purchase_upgrades_at_the_event_time() -> None:
    _, outs, _ = run([ev(at(hours=9)), purchase(at(hours=10), 15_000)])
    assert tier_moves(outs)[1:] == [("bronze", "silver", "upgrade", at(hours=10))]


def test_spend_accumulates_across_purchases_to_the_next_tier() -> None:
    state, outs, _ = run([ev(at()), purchase(at(days=1), 30_000), purchase(at(days=20), 30_000)])
    assert [m[:3] for m in tier_moves(outs)] == [
        (None, "bronze", "initial"),
        ("bronze", "silver", "upgrade"),
        ("silver", "gold", "upgrade"),
    ]
    assert state is not None and state.tier == "gold"


def test_downgrade_waits_for_the_grace_period_after_spend_leaves_the_window() -> None:
    state, outs, _ = run([ev(at(hours=9)), purchase(at(hours=10), 60_000)])
    assert state is not None
    # The purchase on day 0 leaves the 90-day window at the midnight starting day 90.
    state, outs = sweep_in_steps(state, [at(days=90) - 1])
    assert tier_moves(outs) == [] and state.downgrade_pending_since is None
    state, outs = sweep_in_steps(state, [at(days=90)])
    assert tier_moves(outs) == [] and state.downgrade_pending_since == at(days=90)
    assert state.tier == "gold"
    state, outs = sweep_in_steps(state, [at(days=104) - 1])
    assert tier_moves(outs) == [] and state.tier == "gold"
    state, outs = sweep_in_steps(state, [at(days=104)])
    assert tier_moves(outs) == [("gold", "bronze", "downgrade", at(days=104))]
    assert (state.tier, state.tier_since, state.downgrade_pending_since) == (
        "bronze",
        at(days=104),
        None,
    )


def test_purchase_during_grace_cancels_the_downgrade() -> None:
    state, _, _ = run([ev(at(hours=9)), purchase(at(hours=10), 60_000)])
    assert state is not None
    state, _ = sweep_in_steps(state, [at(days=95)])
    assert state.downgrade_pending_since == at(days=90)
    state, outs, _ = run([purchase(at(days=95, hours=1), 50_000)], state=state)
    assert state is not None and state.downgrade_pending_since is None
    assert tier_moves(outs) == [] and state.tier == "gold"
    # No downgrade at day 104; the new purchase leaves the window at day 185 and grace restarts.
    state, outs = sweep_in_steps(state, [at(days=200)])
    assert tier_moves(outs) == [("gold", "bronze", "downgrade", at(days=185) + GRACE)]


def test_spend_falling_one_tier_then_further_downgrades_once_to_the_lowest() -> None:
    # 600 on day 0 and 150 on day 10: gold; day 90 leaves 150 (silver), day 100 leaves 0.
    state, _, _ = run([purchase(at(hours=1), 60_000), purchase(at(days=10), 15_000)])
    assert state is not None and state.tier == "gold"
    state, outs = sweep_in_steps(state, [at(days=200)])
    assert tier_moves(outs) == [("gold", "bronze", "downgrade", at(days=90) + GRACE)]
