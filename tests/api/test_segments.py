"""Segment lists: order (risk desc, user id asc), cursors, filters, cursor tampering."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
import redis.asyncio as aioredis
from pydantic import SecretStr

from streams.view import keys as viewkeys
from tests.api.conftest import READ_KEY, auth
from tests.api.seed import seed_user

TIERS = ("bronze", "silver", "gold")


def _risk(i: int) -> float:
    return [0.0, 0.1, 0.25, 0.3, 0.5, 0.75, 0.9][i % 7]  # many ties


@pytest.fixture
async def users(redis: aioredis.Redis, prefix: str) -> list[dict[str, Any]]:
    """120 at_risk users (ids of varying length, tied risks, three tiers) + 10 active ones."""
    out = []
    for i in range(120):
        u = {"user_id": f"u-{i}", "stage": "at_risk", "tier": TIERS[i % 3], "risk_score": _risk(i)}
        await seed_user(
            redis, prefix, u["user_id"], stage="at_risk", tier=u["tier"], risk=u["risk_score"]
        )
        out.append(u)
    for i in range(10):
        await seed_user(redis, prefix, f"a-{i}", stage="active", tier="gold", risk=0.5)
    return out


def _ordered(users: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return sorted(users, key=lambda u: (-u["risk_score"], u["user_id"]))


async def _walk(client: httpx.AsyncClient, url: str, **params: Any) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = []
    cursor = None
    for _ in range(500):
        q = dict(params, **({"cursor": cursor} if cursor else {}))
        resp = await client.get(url, params=q, headers=auth(READ_KEY))
        assert resp.status_code == 200, resp.text
        body = resp.json()
        assert len(body["items"]) <= params.get("limit", 50)
        items.extend(body["items"])
        cursor = body["next_cursor"]
        if cursor is None:
            return items
    raise AssertionError("pagination did not end")


@pytest.mark.parametrize("limit", [1, 7, 50, 500])
async def test_stage_list_pages_every_user_once_in_order(
    client: httpx.AsyncClient, users: list[dict[str, Any]], limit: int
) -> None:
    items = await _walk(client, "/v1/segments/stage/at_risk", limit=limit)
    assert items == _ordered(users)


async def test_first_page_default_limit_and_cursor(
    client: httpx.AsyncClient, users: list[dict[str, Any]]
) -> None:
    resp = await client.get("/v1/segments/stage/at_risk", headers=auth(READ_KEY))
    body = resp.json()
    assert body["items"] == _ordered(users)[:50]
    assert isinstance(body["next_cursor"], str)


async def test_filters(client: httpx.AsyncClient, users: list[dict[str, Any]]) -> None:
    gold = await _walk(client, "/v1/segments/stage/at_risk", limit=4, tier="gold", min_risk=0.3)
    want = [u for u in users if u["tier"] == "gold" and u["risk_score"] >= 0.3]
    assert gold == _ordered(want) and len(want) > 10

    by_tier = await _walk(client, "/v1/segments/tier/gold", limit=9, stage="at_risk")
    assert by_tier == _ordered([u for u in users if u["tier"] == "gold"])

    all_gold = await _walk(client, "/v1/segments/tier/gold", limit=9)
    assert len(all_gold) == 40 + 10
    assert {u["stage"] for u in all_gold} == {"at_risk", "active"}

    risky = await _walk(client, "/v1/segments/stage/at_risk", limit=11, min_risk=0.75)
    assert risky == _ordered([u for u in users if u["risk_score"] >= 0.75])

    none = await _walk(client, "/v1/segments/stage/at_risk", tier="platinum")
    assert none == []
    empty = await client.get("/v1/segments/stage/churned", headers=auth(READ_KEY))
    assert empty.json() == {"items": [], "next_cursor": None}
    empty_tier = await client.get("/v1/segments/tier/platinum", headers=auth(READ_KEY))
    assert empty_tier.json() == {"items": [], "next_cursor": None}
    # A tier the policy does not define is a 422 (tests/api/test_validation.py).
    unknown_tier = await client.get("/v1/segments/tier/diamond", headers=auth(READ_KEY))
    assert unknown_tier.status_code == 422


async def test_cursor_survives_its_user_leaving_or_moving(
    client: httpx.AsyncClient, users: list[dict[str, Any]], redis: aioredis.Redis, prefix: str
) -> None:
    key = viewkeys.stage_segment_key(prefix, "at_risk")
    ordered = _ordered(users)
    url = "/v1/segments/stage/at_risk"
    for change in ("remove", "rescore"):
        first = (await client.get(url, params={"limit": 10}, headers=auth(READ_KEY))).json()
        last = first["items"][-1]["user_id"]
        if change == "remove":
            await redis.zrem(key, last)
        else:
            await redis.zadd(key, {last: 0.99})
        nxt = await client.get(
            url, params={"limit": 10, "cursor": first["next_cursor"]}, headers=auth(READ_KEY)
        )
        assert [u["user_id"] for u in nxt.json()["items"]] == [
            u["user_id"] for u in ordered[10:20]
        ], change
        await redis.zadd(key, {last: ordered[9]["risk_score"]})


async def test_tampered_or_foreign_cursor_is_400(
    client: httpx.AsyncClient, users: list[dict[str, Any]]
) -> None:
    url = "/v1/segments/stage/at_risk"
    cursor = (await client.get(url, params={"limit": 5}, headers=auth(READ_KEY))).json()[
        "next_cursor"
    ]
    body, mac = cursor.split(".")
    flipped = ("A" if body[0] != "A" else "B") + body[1:]
    for bad in (
        f"{flipped}.{mac}",
        f"{body}.{mac[:-2]}AA",
        "not-a-cursor",
        "%%%.%%%",
        cursor + "x",
    ):
        resp = await client.get(url, params={"cursor": bad}, headers=auth(READ_KEY))
        assert resp.status_code == 400, bad
        assert resp.json()["error"]["code"] == "invalid_cursor"
    # A valid cursor of another list (or other filters) is foreign here.
    for other, params in (
        ("/v1/segments/stage/active", {}),
        (url, {"tier": "gold"}),
        (url, {"min_risk": 0.5}),
        ("/v1/segments/tier/gold", {}),
    ):
        resp = await client.get(other, params={**params, "cursor": cursor}, headers=auth(READ_KEY))
        assert resp.status_code == 400, other
        assert resp.json()["error"]["code"] == "invalid_cursor"


async def test_cursor_signed_with_another_secret_is_400(
    settings: Any, make_client: Any, users: list[dict[str, Any]]
) -> None:
    url = "/v1/segments/stage/at_risk"
    async with make_client(settings) as client:
        page = (await client.get(url, params={"limit": 5}, headers=auth(READ_KEY))).json()
    other = settings.model_copy(update={"cursor_secret": SecretStr("another-secret")})
    async with make_client(other) as client:
        resp = await client.get(url, params={"cursor": page["next_cursor"]}, headers=auth(READ_KEY))
    assert resp.status_code == 400
    # Two processes with the same settings agree (the secret is not random per process).
    async with make_client(settings) as client:
        resp = await client.get(url, params={"cursor": page["next_cursor"]}, headers=auth(READ_KEY))
    assert resp.status_code == 200


async def test_unknown_stage_and_bad_params_are_422(client: httpx.AsyncClient) -> None:
    resp = await client.get("/v1/segments/stage/sleeping", headers=auth(READ_KEY))
    assert resp.status_code == 422
    err = resp.json()["error"]
    assert err["code"] == "validation_error"
    assert "at_risk" in err["message"] and "reactivated" in err["message"]
    for params in ({"limit": 0}, {"limit": 501}, {"min_risk": 2}, {"min_risk": "x"}):
        resp = await client.get("/v1/segments/stage/active", params=params, headers=auth(READ_KEY))
        assert resp.status_code == 422, params
    resp = await client.get(
        "/v1/segments/tier/gold", params={"stage": "sleeping"}, headers=auth(READ_KEY)
    )
    assert resp.status_code == 422
