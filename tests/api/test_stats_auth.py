"""GET /v1/stats, and API-key authentication and scopes on every /v1 route."""

from __future__ import annotations

import logging
import time

import httpx
import pytest
import redis.asyncio as aioredis

from services.auth import parse_api_keys
from services.settings import ApiSettings
from tests.api.conftest import (
    ADMIN_KEY,
    ALL_KEY,
    INGEST_KEY,
    READ_KEY,
    ClientFactory,
    auth,
)
from tests.api.seed import seed_user, seed_warning


async def test_stats_counts_and_recent_warnings(
    client: httpx.AsyncClient, redis: aioredis.Redis, prefix: str
) -> None:
    for i in range(5):
        await seed_user(redis, prefix, f"n-{i}", stage="new", tier="bronze")
    for i in range(3):
        await seed_user(redis, prefix, f"r-{i}", stage="at_risk", tier="gold", risk=0.4)
    now = time.time_ns() // 1_000_000
    await seed_warning(redis, prefix, "w-recent", now - 10 * 60_000)
    await seed_warning(redis, prefix, "w-hours", now - 5 * 3_600_000)
    await seed_warning(redis, prefix, "w-old", now - 30 * 3_600_000)
    resp = await client.get("/v1/stats", headers=auth(READ_KEY))
    assert resp.status_code == 200
    body = resp.json()
    assert body["users"] == 8
    assert body["stages"] == {
        "new": 5,
        "active": 0,
        "at_risk": 3,
        "dormant": 0,
        "churned": 0,
        "reactivated": 0,
    }
    assert body["tiers"] == {"bronze": 5, "gold": 3}
    assert body["warnings"] == {"last_hour": 1, "last_day": 2}
    assert body["as_of"].endswith("Z")


async def test_stats_lists_tiers_in_the_policys_rank_order(
    client: httpx.AsyncClient, redis: aioredis.Redis, prefix: str
) -> None:
    for n, tier in enumerate(["platinum", "legacy", "gold", "bronze", "silver", "platinum"]):
        await seed_user(redis, prefix, f"t-{n}", tier=tier)
    body = (await client.get("/v1/stats", headers=auth(READ_KEY))).json()
    assert list(body["tiers"].items()) == [
        ("bronze", 1),
        ("silver", 1),
        ("gold", 1),
        ("platinum", 2),
        ("legacy", 1),  # not a tier of the policy: last
    ]


READS = [
    ("GET", "/v1/users/u-1"),
    ("GET", "/v1/users/u-1/transitions"),
    ("GET", "/v1/segments/stage/active"),
    ("GET", "/v1/segments/tier/gold"),
    ("GET", "/v1/stats"),
    ("GET", "/v1/stats/timeline"),
    ("GET", "/v1/segments/priority"),
]
ROUTES = [
    *((m, p, "read") for m, p in READS),
    ("POST", "/v1/events", "ingest"),
    ("DELETE", "/v1/users/u-1", "admin"),
]
KEY_SCOPES = {READ_KEY: "read", INGEST_KEY: "ingest", ADMIN_KEY: "admin"}


@pytest.mark.parametrize(("method", "path", "scope"), ROUTES)
async def test_missing_invalid_and_insufficient_keys(
    client: httpx.AsyncClient, method: str, path: str, scope: str
) -> None:
    resp = await client.request(method, path, json=[])
    assert resp.status_code == 401
    assert resp.json()["error"]["code"] == "missing_api_key"
    for headers in ({"X-API-Key": "wrong"}, {"Authorization": "Bearer wrong"}):
        resp = await client.request(method, path, json=[], headers=headers)
        assert resp.status_code == 401
        assert resp.json()["error"]["code"] == "invalid_api_key"
        assert "wrong" not in resp.text
    for key, key_scope in KEY_SCOPES.items():
        if key_scope == scope:
            continue
        resp = await client.request(method, path, json=[], headers=auth(key))
        assert resp.status_code == 403, (key_scope, method, path)
        err = resp.json()["error"]
        assert err["code"] == "insufficient_scope"
        assert f"'{scope}'" in err["message"] and err["details"] == {"required_scope": scope}


@pytest.mark.parametrize(("method", "path"), READS)
async def test_read_scope_passes_with_header_or_bearer(
    client: httpx.AsyncClient, method: str, path: str
) -> None:
    for headers in (auth(READ_KEY), {"Authorization": f"Bearer {READ_KEY}"}, auth(ALL_KEY)):
        resp = await client.request(method, path, headers=headers)
        assert resp.status_code in (200, 404), resp.text  # u-1 does not exist here
        if resp.status_code == 404:
            assert resp.json()["error"]["code"] == "user_not_found"


async def test_no_keys_configured_refuses_every_v1_route(
    settings: ApiSettings, make_client: ClientFactory, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    empty = ApiSettings(**{**settings.model_dump(), "api_keys": ""})
    async with make_client(empty) as client:
        resp = await client.get("/v1/stats", headers=auth(READ_KEY))
        assert resp.status_code == 401
        assert (await client.get("/healthz")).status_code == 200
    assert READ_KEY not in caplog.text


def test_api_keys_parsing() -> None:
    keys = parse_api_keys(" a:read+ingest , b:admin,")
    assert [(k.label, k.secret, sorted(k.scopes)) for k in keys] == [
        ("key#1", b"a", ["ingest", "read"]),
        ("key#2", b"b", ["admin"]),
    ]
    assert parse_api_keys("") == ()
    for bad in ("secretkey", "secretkey:", "secretkey:write", ":read", "ok:read,secretkey:x"):
        with pytest.raises(ValueError) as info:
            parse_api_keys(bad)
        assert "entry" in str(info.value) and "secretkey" not in str(info.value)


async def test_cookie_key_works_for_read_routes_only(client: httpx.AsyncClient) -> None:
    from services.auth import COOKIE

    client.cookies.set(COOKIE, ALL_KEY)
    try:
        assert (await client.get("/v1/stats")).status_code == 200
        resp = await client.delete("/v1/users/u-1")
        assert resp.status_code == 401 and resp.json()["error"]["code"] == "missing_api_key"
        resp = await client.post("/v1/events", json=[{"x": 1}])
        assert resp.status_code == 401
    finally:
        client.cookies.clear()
