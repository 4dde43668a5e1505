"""Write the Redis view exactly as streams/view/keys.py lays it out (what the worker writes)."""

from __future__ import annotations

import json
from typing import Any

import redis.asyncio as aioredis

from streams.view import keys as viewkeys


def user_doc(user_id: str, stage: str, tier: str, risk: float, version: int) -> dict[str, Any]:
    """A streams.core.snapshot-shaped document plus updated_at."""
    return {
        "user_id": user_id,
        "stage": stage,
        "stage_since": "2026-11-01T00:00:00.000Z",
        "tier": tier,
        "tier_since": "2026-11-01T00:00:00.000Z",
        "risk_score": risk,
        "first_seen": "2026-10-01T08:00:00.000Z",
        "last_seen": "2026-11-20T08:00:00.000Z",
        "last_active": "2026-11-20T08:00:00.000Z",
        "typical_gap_days": 1.5,
        "last_warning_at": None,
        "last_warning_reason": None,
        "windows": {
            "7d": {
                "events": 4,
                "by_type": {"page_view": 3, "purchase": 1},
                "spend": 19.9,
                "active_days": 3,
            },
        },
        "lifetime": {"events": 40, "spend": 120.5},
        "as_of": "2026-11-22T00:00:00.000Z",
        "version": version,
        "updated_at": "2026-11-22T00:00:01.000Z",
    }


def transition(user_id: str, n: int) -> dict[str, Any]:
    """A lifecycle_changed document as streams.core.outputs.to_wire makes it (n = its order)."""
    return {
        "schema_version": 1,
        "kind": "lifecycle_changed",
        "idempotency_key": f"{n:032x}",
        "user_id": user_id,
        "event_time": "2026-11-22T10:00:00.000Z",
        "event_time_ms": 1_795_000_000_000 + n,
        "emitted_at": "2026-11-22T10:00:01.000Z",
        "from_stage": "new",
        "to_stage": "active",
        "reason": "new_period_over",
        "figures": {"n": n},
    }


async def seed_user(
    r: aioredis.Redis,
    prefix: str,
    user_id: str,
    *,
    stage: str = "active",
    tier: str = "bronze",
    risk: float = 0.0,
    version: int = 1,
    transitions: int = 0,
) -> None:
    doc = user_doc(user_id, stage, tier, risk, version)
    async with r.pipeline(transaction=True) as pipe:
        pipe.hset(
            viewkeys.user_key(prefix, user_id),
            mapping={
                "version": version,
                "stage": stage,
                "tier": tier,
                "risk": repr(risk),
                "doc": json.dumps(doc),
            },
        )
        pipe.zadd(viewkeys.stage_segment_key(prefix, stage), {user_id: risk})
        pipe.zadd(viewkeys.tier_segment_key(prefix, tier), {user_id: risk})
        pipe.hincrby(viewkeys.stage_counts_key(prefix), stage, 1)
        pipe.hincrby(viewkeys.tier_counts_key(prefix), tier, 1)
        tkey = viewkeys.transitions_key(prefix, user_id)
        for n in range(transitions):
            pipe.lpush(tkey, json.dumps(transition(user_id, n)))  # newest first
        if transitions:
            pipe.ltrim(tkey, 0, viewkeys.TRANSITIONS_KEPT - 1)
        await pipe.execute()


async def seed_warning(r: aioredis.Redis, prefix: str, key: str, event_ms: int) -> None:
    await r.zadd(viewkeys.warnings_key(prefix), {key: event_ms})


async def seed_recall(
    r: aioredis.Redis, prefix: str, counts: dict[tuple[str, str, str, str], int]
) -> None:
    """The recall totals: (group, tier, reason, outcome) -> churn warnings."""
    await r.hset(
        viewkeys.recall_counts_key(prefix),
        mapping={viewkeys.recall_field(*cell): n for cell, n in counts.items()},
    )
