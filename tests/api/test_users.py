"""GET /v1/users/{id} and its transitions, from a view seeded per streams/view/keys.py."""

from __future__ import annotations

import httpx
import redis.asyncio as aioredis

from tests.api.conftest import READ_KEY, auth
from tests.api.seed import seed_user


async def test_user_is_the_doc_with_version(
    client: httpx.AsyncClient, redis: aioredis.Redis, prefix: str
) -> None:
    await seed_user(redis, prefix, "u-1", stage="at_risk", tier="gold", risk=0.42, version=7)
    resp = await client.get("/v1/users/u-1", headers=auth(READ_KEY))
    assert resp.status_code == 200
    body = resp.json()
    assert body["user_id"] == "u-1"
    assert body["version"] == 7
    assert (body["stage"], body["tier"], body["risk_score"]) == ("at_risk", "gold", 0.42)
    assert body["windows"]["7d"]["by_type"] == {"page_view": 3, "purchase": 1}
    assert body["lifetime"] == {"events": 40, "spend": 120.5}
    assert body["updated_at"] == "2026-11-22T00:00:01.000Z"


async def test_unknown_user_is_404(client: httpx.AsyncClient) -> None:
    resp = await client.get("/v1/users/nobody", headers=auth(READ_KEY))
    assert resp.status_code == 404
    assert resp.json()["error"]["code"] == "user_not_found"
    assert "nobody" in resp.json()["error"]["message"]
    resp = await client.get("/v1/users/nobody/transitions", headers=auth(READ_KEY))
    assert resp.status_code == 404
    assert resp.json()["error"]["code"] == "user_not_found"


async def test_transitions_newest_first_and_bounded(
    client: httpx.AsyncClient, redis: aioredis.Redis, prefix: str
) -> None:
    await seed_user(redis, prefix, "u-2", transitions=60)  # the view keeps the newest 50
    resp = await client.get("/v1/users/u-2/transitions", headers=auth(READ_KEY))
    assert resp.status_code == 200
    items = resp.json()["items"]
    assert [t["figures"]["n"] for t in items] == list(range(59, 39, -1))  # default limit 20
    assert items[0]["kind"] == "lifecycle_changed" and items[0]["to_stage"] == "active"

    resp = await client.get("/v1/users/u-2/transitions?limit=50", headers=auth(READ_KEY))
    assert [t["figures"]["n"] for t in resp.json()["items"]] == list(range(59, 9, -1))
    resp = await client.get("/v1/users/u-2/transitions?limit=3", headers=auth(READ_KEY))
    assert len(resp.json()["items"]) == 3
    for bad in ("0", "51", "x"):
        resp = await client.get(f"/v1/users/u-2/transitions?limit={bad}", headers=auth(READ_KEY))
        assert resp.status_code == 422, bad
        assert resp.json()["error"]["code"] == "validation_error"


async def test_user_without_transitions_has_an_empty_list(
    client: httpx.AsyncClient, redis: aioredis.Redis, prefix: str
) -> None:
    await seed_user(redis, prefix, "u-3")
    resp = await client.get("/v1/users/u-3/transitions", headers=auth(READ_KEY))
    assert resp.status_code == 200
    assert resp.json() == {"user_id": "u-3", "items": []}
