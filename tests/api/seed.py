"""Write the Redis view exactly as streams/view/keys.py lays it out (what the worker writes)."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

import redis.asyncio as aioredis

from streams.core.eventtime import day_of
from streams.core.policy import Policy
from streams.core.state import UserState, encode_state
from streams.core.windows import DayBucket
from streams.view import keys as viewkeys


def _ms(text: str) -> int:
    return int(datetime.fromisoformat(text).timestamp() * 1000)


UPDATED_AT_MS = _ms("2026-11-22T00:00:01+00:00")  # the user's clock
_TODAY = day_of(UPDATED_AT_MS)


def _bucket(days_ago: int, spend_cents: int = 0, **counts: int) -> DayBucket:
    types = (*Policy().event_types, "other")
    return DayBucket(
        _TODAY - days_ago, tuple(counts.get(t, 0) for t in types), spend_cents, active=True
    )


def user_state(user_id: str, stage: str, tier: str, risk: float, version: int) -> UserState:
    """A state whose document (streams.core.snapshot.user_document, default policy) has, in
    its 7-day window, 3 page views and a purchase of 19.90 on 3 days; 40 events and 120.50
    in its lifetime; updated_at 2026-11-22T00:00:01.000Z."""
    return UserState(
        user_id=user_id,
        first_seen=_ms("2026-10-01T08:00:00+00:00"),
        last_seen=_ms("2026-11-20T08:00:00+00:00"),
        last_active=_ms("2026-11-20T08:00:00+00:00"),
        evaluated_at=UPDATED_AT_MS,
        buckets=(
            _bucket(6, page_view=1),
            _bucket(4, page_view=1),
            _bucket(2, 1990, page_view=1, purchase=1),
        ),
        total_events=40,
        total_spend_cents=12_050,
        stage=stage,
        stage_since=_ms("2026-11-01T00:00:00+00:00"),
        risk=risk,
        tier=tier,
        tier_since=_ms("2026-11-01T00:00:00+00:00"),
        version=version,
    )


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
    state = user_state(user_id, stage, tier, risk, version)
    async with r.pipeline(transaction=True) as pipe:
        pipe.hset(
            viewkeys.user_key(prefix, user_id),
            mapping={
                "version": version,
                "stage": stage,
                "tier": tier,
                "risk": repr(risk),
                "state": encode_state(state),
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
