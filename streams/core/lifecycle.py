"""The lifecycle stage machine: new -> active -> at_risk -> dormant -> churned, and reactivated.

`decide_stage` is total and pure: given the previous stage and the facts at a moment it says
which stage the user is in and why. The engine calls it at every moment the answer can change.
"""

from __future__ import annotations

from streams.core.churn import WarningReason, churn_likely, is_dropping, is_silent
from streams.core.facts import Facts
from streams.core.policy import Derived, Policy, derived


class Stage:
    NEW = "new"
    ACTIVE = "active"
    AT_RISK = "at_risk"
    DORMANT = "dormant"
    CHURNED = "churned"
    REACTIVATED = "reactivated"
    ALL = (NEW, ACTIVE, AT_RISK, DORMANT, CHURNED, REACTIVATED)


def decide_stage(
    prev: str | None,
    f: Facts,
    returned_at: int | None,
    policy: Policy,
    *,
    episode_start: int | None = None,
    episode_reason: str | None = None,
    d: Derived | None = None,
) -> tuple[str, str]:
    """(stage, reason) for a user whose previous stage was `prev`, as of `f.at`.

    `episode_start`/`episode_reason` describe the current at-risk episode when `prev` is
    at_risk: an episode ends only through activity after it started, never because a sliding
    window changed the user's typical gap while they stayed silent. `d`: `derived(policy)`,
    when the caller has it.
    """
    if d is None:
        d = derived(policy)
    if f.silence_ms >= d.churned_ms:
        return Stage.CHURNED, "silence_churned"
    if f.silence_ms >= d.dormant_ms:
        return Stage.DORMANT, "silence_dormant"
    if prev in (Stage.DORMANT, Stage.CHURNED):
        return Stage.REACTIVATED, "returned"
    in_episode = prev == Stage.AT_RISK
    if (
        in_episode
        and episode_start is not None
        and (f.last_active is None or f.last_active <= episode_start)
    ):
        return Stage.AT_RISK, episode_reason or WarningReason.SILENCE
    likely = churn_likely(f, policy)
    if likely:
        return Stage.AT_RISK, WarningReason.CHURN_PROBABILITY
    if likely is None and is_silent(f):
        return Stage.AT_RISK, WarningReason.SILENCE
    drop_episode = in_episode and episode_reason == WarningReason.ACTIVITY_DROP
    if is_dropping(f, policy, in_episode=drop_episode):
        return Stage.AT_RISK, WarningReason.ACTIVITY_DROP
    if prev in (None, Stage.NEW) and f.age_ms < d.new_user_ms:
        return Stage.NEW, "first_seen"
    if (
        prev in (Stage.REACTIVATED, Stage.AT_RISK)
        and returned_at is not None
        and f.at - returned_at < d.reactivated_ms
    ):
        return Stage.REACTIVATED, "returned"
    if in_episode:
        return Stage.ACTIVE, "recovered"
    if prev == Stage.NEW:
        return Stage.ACTIVE, "new_period_over"
    if prev == Stage.REACTIVATED:
        return Stage.ACTIVE, "reactivation_settled"
    return Stage.ACTIVE, "active"
