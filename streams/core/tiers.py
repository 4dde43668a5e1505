"""Value tiers by rolling spend, with hysteresis: upgrade at once, downgrade after a grace."""

from __future__ import annotations

from bisect import bisect_right

import msgspec

from streams.core.policy import Derived, Policy, derived


# gc=False: frozen, holding only numbers, strings and tuples of those or of other such structs,
# so never part of a reference cycle; untracked, its many short-lived copies do not set off
# garbage collections.
class TierDecision(msgspec.Struct, frozen=True, gc=False):
    tier: str
    pending_since: int | None
    direction: str | None  # "initial", "upgrade", "downgrade" or None when unchanged
    reason: str = ""
    threshold: float = 0.0


def eligible_tier(spend_cents: int, policy: Policy) -> str:
    """The highest tier whose threshold the spend reaches."""
    d = derived(policy)
    return d.tier_names[_eligible(spend_cents, d.tier_cents)]


def _eligible(spend_cents: int, tier_cents: tuple[int, ...]) -> int:
    """The index of the last tier whose threshold (cents) the spend reaches; 0 when none.
    The policy keeps the thresholds increasing (non-decreasing once in cents)."""
    i = bisect_right(tier_cents, spend_cents)
    return i - 1 if i else 0


def decide_tier(
    current: str,
    pending_since: int | None,
    spend_cents: int,
    at: int,
    policy: Policy,
    d: Derived | None = None,
) -> TierDecision:
    """The tier as of `at` for a user in `current` whose window spend is `spend_cents`.

    A tier that vanished from the policy counts as below every tier, so the user is re-tiered
    at once. `d`: `derived(policy)`, when the caller has it.
    """
    if d is None:
        d = derived(policy)
    target = d.tier_names[_eligible(spend_cents, d.tier_cents)]
    if not current:
        return TierDecision(target, None, "initial", "first_seen", d.tier_min_spend[target])
    if target == current:  # the usual case (tier names are unique)
        return TierDecision(current, None, None)
    cur, tgt = d.tier_rank.get(current, -1), d.tier_rank[target]
    if tgt > cur:
        return TierDecision(
            target, None, "upgrade", "spend_reached_threshold", d.tier_min_spend[target]
        )
    since = pending_since if pending_since is not None else at
    if at - since >= d.grace_ms or cur < 0:
        return TierDecision(
            target,
            None,
            "downgrade",
            "spend_below_threshold_past_grace",
            d.tier_min_spend[current] if cur >= 0 else 0.0,
        )
    return TierDecision(current, since, None)
