"""GET /v1/stats/recall over the Redis view's recall totals, as the worker's write script keeps
them (real redis-server)."""

from __future__ import annotations

import httpx
import pytest
import redis.asyncio as aioredis
from msgspec.structs import replace

from streams.core.contract import Event
from streams.core.engine import apply_event
from streams.core.policy import Policy
from streams.core.recall import Counts, RecallCell, uplift, wilson
from streams.local.embedded import Server
from streams.view.keys import recall_counts_key
from streams.view.writer import View
from tests.api.conftest import READ_KEY, auth
from tests.api.seed import seed_recall

SILENCE, DROP = "silence_exceeds_normal", "activity_drop"


async def test_recall_stats_compare_treated_with_holdout_per_tier_and_reason(
    client: httpx.AsyncClient, redis: aioredis.Redis, prefix: str
) -> None:
    await seed_recall(
        redis,
        prefix,
        {
            ("treated", "gold", SILENCE, "reactivated"): 14,
            ("treated", "gold", SILENCE, "not_reactivated"): 6,
            ("treated", "gold", SILENCE, "open"): 1,
            ("holdout", "gold", SILENCE, "reactivated"): 3,
            ("holdout", "gold", SILENCE, "not_reactivated"): 7,
            ("treated", "my|tier", DROP, "open"): 2,
        },
    )
    resp = await client.get("/v1/stats/recall", headers=auth(READ_KEY))
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert (body["confidence"], body["interval"]) == (0.95, "newcombe_hybrid_score")
    overall = body["overall"]
    # Each group's rate with its Wilson 95% interval, the halves Newcombe's interval combines.
    treated_ci = (overall["treated"].pop("rate_ci_low"), overall["treated"].pop("rate_ci_high"))
    assert treated_ci == pytest.approx(wilson(14, 20))
    assert round(treated_ci[0], 4) == 0.481 and round(treated_ci[1], 4) == 0.8545
    holdout_ci = (overall["holdout"]["rate_ci_low"], overall["holdout"]["rate_ci_high"])
    assert holdout_ci == pytest.approx(wilson(3, 10))
    assert overall["treated"] == {
        "warned": 23,
        "open": 3,
        "judged": 20,
        "reactivated": 14,
        "not_reactivated": 6,
        "rate": 0.7,
    }
    assert overall["holdout"]["rate"] == 0.3 and overall["holdout"]["judged"] == 10
    u = uplift(Counts(reactivated=14, not_reactivated=6), Counts(reactivated=3, not_reactivated=7))
    assert u is not None
    assert (overall["uplift"], overall["ci_low"], overall["ci_high"]) == pytest.approx(
        (0.4, u.low, u.high)
    )
    assert round(overall["ci_low"], 4) == 0.026 and round(overall["ci_high"], 4) == 0.6466
    assert [(r["tier"], r["reason"]) for r in body["by_tier"]] == [
        ("gold", None),
        ("my|tier", None),
    ]
    assert [r["reason"] for r in body["by_reason"]] == [DROP, SILENCE]
    assert [(r["tier"], r["reason"]) for r in body["by_tier_and_reason"]] == [
        ("gold", SILENCE),
        ("my|tier", DROP),
    ]
    drop = body["by_reason"][0]
    assert drop["treated"]["open"] == 2 and drop["treated"]["rate"] is None
    assert drop["uplift"] is None and drop["ci_low"] is None


async def test_recall_stats_of_an_empty_view(client: httpx.AsyncClient) -> None:
    resp = await client.get("/v1/stats/recall", headers=auth(READ_KEY))
    assert resp.status_code == 200
    body = resp.json()
    assert body["overall"]["treated"]["warned"] == 0 and body["overall"]["uplift"] is None
    assert body["by_tier"] == [] and body["by_tier_and_reason"] == []
    assert (await client.get("/v1/stats/recall")).status_code == 401


async def test_the_write_script_keeps_the_totals_equal_to_the_users_tallies(
    client: httpx.AsyncClient, redis: aioredis.Redis, redis_server: Server, prefix: str
) -> None:
    policy = Policy()
    view = View(aioredis.Redis(host="127.0.0.1", port=redis_server.port), prefix)
    try:
        base = apply_event(None, Event("e1", "ann", "page_view", 1_795_305_600_000), policy).state
        warned = replace(
            base, version=2, recall_tally=(RecallCell("holdout", "bronze", SILENCE, warned=1),)
        )
        judged = replace(
            warned,
            version=3,
            recall_tally=(RecallCell("holdout", "bronze", SILENCE, warned=2, reactivated=1),),
        )
        key = recall_counts_key(prefix)
        assert await view.write(warned, [])
        assert await redis.hgetall(key) == {"holdout|bronze|silence_exceeds_normal|open": "1"}
        assert await view.write(judged, [])
        expected = {
            "holdout|bronze|silence_exceeds_normal|open": "1",
            "holdout|bronze|silence_exceeds_normal|reactivated": "1",
        }
        assert await redis.hgetall(key) == expected
        # A redelivered or stale write is refused whole: the totals do not move.
        assert not await view.write(judged, [])
        assert not await view.write(warned, [])
        assert await redis.hgetall(key) == expected
        other = replace(judged, user_id="bob", version=1)
        assert await view.write(other, [])
        resp = await client.get("/v1/stats/recall", headers=auth(READ_KEY))
        holdout = resp.json()["overall"]["holdout"]
        assert (holdout["warned"], holdout["open"], holdout["reactivated"]) == (4, 2, 2)
        # Erasing a user takes their tally out of the totals.
        await view.erase("bob")
        assert await redis.hgetall(key) == expected
        await view.erase("ann")
        assert await redis.hgetall(key) == {}
    finally:
        await view.client.aclose()
