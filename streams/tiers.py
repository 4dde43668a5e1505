"""Value tiers by rolling spend, with hysteresis: upgrade at once, downgrade after a grace."""

from __future__ import annotations

import msgspec

from streams.policy import Policy, days_ms


class TierDecision(msgspec.Struct, frozen=True):
    tier: str
    pending_since: int | None
    direction: str | None  # "initial", "upgrade", "downgrade" or None when unchanged
    reason: str = ""
    threshold: float = 0.0


def eligible_tier(spend_cents: int, policy: Policy) -> str:
    """The highest tier whose threshold the spend reaches."""
    name = policy.tiers[0].name
    for tier in policy.tiers:
        if spend_cents >= round(tier.min_spend * 100):
            name = tier.name
    return name


def _rank(name: str, policy: Policy) -> int:
    for i, tier in enumerate(policy.tiers):
        if tier.name == name:
            return i
    return -1


def _threshold(name: str, policy: Policy) -> float:
    return next(t.min_spend for t in policy.tiers if t.name == name)


def decide_tier(
    current: str, pending_since: int | None, spend_cents: int, at: int, policy: Policy
) -> TierDecision:
    """The tier as of `at` for a user in `current` whose window spend is `spend_cents`.

    A tier that vanished from the policy counts as below every tier, so the user is re-tiered
    at once.
    """
    target = eligible_tier(spend_cents, policy)
    if not current:
        return TierDecision(target, None, "initial", "first_seen", _threshold(target, policy))
    cur, tgt = _rank(current, policy), _rank(target, policy)
    if tgt > cur:
        return TierDecision(
            target, None, "upgrade", "spend_reached_threshold", _threshold(target, policy)
        )
    if tgt == cur:
        return TierDecision(current, None, None)
    since = pending_since if pending_since is not None else at
    if at - since >= days_ms(policy.downgrade_grace_days) or cur < 0:
        return TierDecision(
            target,
            None,
            "downgrade",
            "spend_below_threshold_past_grace",
            _threshold(current, policy) if cur >= 0 else 0.0,
        )
    return TierDecision(current, since, None)
