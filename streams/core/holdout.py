"""Holdout assignment: which users' churn warnings senders must skip (the control group).

Pure and deterministic: a user's group depends only on the policy's salt and fraction and the
user id, never on a process, a clock or Python's per-process `hash()`, so every worker and
`pulse replay` put the same user in the same group.
"""

from __future__ import annotations

import hashlib

from streams.core.policy import Policy


class Group:
    TREATED = "treated"  # senders contact these users
    HOLDOUT = "holdout"  # warned but never contacted: the control group
    ALL = (TREATED, HOLDOUT)


def holdout_draw(salt: str, user_id: str) -> float:
    """A uniform number in [0, 1) fixed by salt and user id (blake2b, first 64 bits)."""
    data = f"{salt}\x1f{user_id}".encode("utf-8", "surrogatepass")
    digest = hashlib.blake2b(data, digest_size=8).digest()
    return int.from_bytes(digest) / 2**64


def assign_group(user_id: str, policy: Policy) -> str:
    """Group.HOLDOUT for a share `policy.holdout_fraction` of users, Group.TREATED otherwise."""
    if holdout_draw(policy.holdout_salt, user_id) < policy.holdout_fraction:
        return Group.HOLDOUT
    return Group.TREATED
