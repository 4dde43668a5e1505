"""Enumerated parameters are checked (an unknown tier or stage is a 422 naming the allowed
values, not an empty list), and the docs pages load nothing from outside the API."""

from __future__ import annotations

from html.parser import HTMLParser
from typing import Any

import httpx
import pytest
import redis.asyncio as aioredis

from services.settings import ApiSettings
from streams.core.lifecycle import Stage
from streams.core.policy import Policy, Tier
from tests.api.conftest import READ_KEY, ClientFactory, auth
from tests.api.seed import seed_user

DEFAULT_TIERS = Policy().tier_names  # bronze, silver, gold, platinum


def _error(resp: httpx.Response) -> dict[str, Any]:
    assert resp.status_code == 422, resp.text
    err: dict[str, Any] = resp.json()["error"]
    assert err["code"] == "validation_error"
    return err


def _names_all(message: str, allowed: tuple[str, ...]) -> bool:
    return all(f"'{name}'" in message for name in allowed)


@pytest.mark.parametrize(
    ("url", "params", "loc"),
    [
        ("/v1/segments/tier/diamond", {}, ["path", "tier"]),
        ("/v1/segments/stage/at_risk", {"tier": "diamond"}, ["query", "tier"]),
    ],
)
async def test_an_unknown_tier_is_a_422_naming_the_policys_tiers(
    client: httpx.AsyncClient, url: str, params: dict[str, str], loc: list[str]
) -> None:
    err = _error(await client.get(url, params=params, headers=auth(READ_KEY)))
    assert _names_all(err["message"], DEFAULT_TIERS), err
    assert "'diamond'" in err["message"]
    assert err["message"].startswith(f"invalid request: {'.'.join(loc)}: ")
    assert [d["loc"] for d in err["details"]] == [loc]


@pytest.mark.parametrize(
    ("url", "params", "loc"),
    [
        ("/v1/segments/stage/sleeping", {}, ["path", "stage"]),
        ("/v1/segments/tier/gold", {"stage": "sleeping"}, ["query", "stage"]),
    ],
)
async def test_an_unknown_stage_is_a_422_naming_the_lifecycle_stages(
    client: httpx.AsyncClient, url: str, params: dict[str, str], loc: list[str]
) -> None:
    err = _error(await client.get(url, params=params, headers=auth(READ_KEY)))
    assert _names_all(err["message"], Stage.ALL), err
    assert [d["loc"] for d in err["details"]] == [loc]


async def test_every_tier_of_the_policy_and_stage_is_accepted(client: httpx.AsyncClient) -> None:
    for tier in DEFAULT_TIERS:
        resp = await client.get(f"/v1/segments/tier/{tier}", headers=auth(READ_KEY))
        assert resp.json() == {"items": [], "next_cursor": None}
    for stage in Stage.ALL:
        resp = await client.get(
            f"/v1/segments/stage/{stage}", params={"tier": "gold"}, headers=auth(READ_KEY)
        )
        assert resp.json() == {"items": [], "next_cursor": None}


async def test_the_tiers_come_from_the_policy_the_app_is_given(
    settings: ApiSettings, make_client: ClientFactory, redis: aioredis.Redis, prefix: str
) -> None:
    policy = Policy(tiers=(Tier(name="basic", min_spend=0), Tier(name="vip", min_spend=1000)))
    await seed_user(redis, prefix, "v1", tier="vip", risk=0.5)
    async with make_client(settings, policy) as client:
        vip = await client.get("/v1/segments/tier/vip", headers=auth(READ_KEY))
        assert [u["user_id"] for u in vip.json()["items"]] == ["v1"]
        basic = await client.get("/v1/segments/tier/basic", headers=auth(READ_KEY))
        assert basic.json()["items"] == []
        err = _error(await client.get("/v1/segments/tier/gold", headers=auth(READ_KEY)))
        assert _names_all(err["message"], ("basic", "vip"))
        assert "'bronze'" not in err["message"]


async def test_a_tier_held_by_users_in_the_view_is_served_though_the_policy_lacks_it(
    client: httpx.AsyncClient, redis: aioredis.Redis, prefix: str
) -> None:
    # The worker's policy has a tier this API's (the defaults) does not: answer, not refuse.
    await seed_user(redis, prefix, "l1", stage="active", tier="legacy", risk=0.2)
    by_tier = await client.get("/v1/segments/tier/legacy", headers=auth(READ_KEY))
    assert [u["user_id"] for u in by_tier.json()["items"]] == ["l1"]
    filtered = await client.get(
        "/v1/segments/stage/active", params={"tier": "legacy"}, headers=auth(READ_KEY)
    )
    assert [u["user_id"] for u in filtered.json()["items"]] == ["l1"]


async def test_authentication_is_checked_before_the_tier(client: httpx.AsyncClient) -> None:
    resp = await client.get("/v1/segments/tier/diamond")
    assert resp.status_code == 401


# --------------------------------------------------------------------------- docs offline


class _Assets(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.urls: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        for name, value in attrs:
            if name in ("src", "href") and value:
                self.urls.append(value)


@pytest.mark.parametrize("page", ["/docs", "/redoc"])
async def test_the_docs_pages_load_only_assets_the_api_serves(
    client: httpx.AsyncClient, page: str
) -> None:
    resp = await client.get(page)
    assert resp.status_code == 200
    assert resp.headers["content-type"].startswith("text/html")
    assert "://" not in resp.text  # no CDN, no web fonts: nothing outside this origin
    parser = _Assets()
    parser.feed(resp.text)
    scripts = [u for u in parser.urls if u.endswith(".js")]
    assert scripts, parser.urls  # the page's UI comes from a script
    for url in parser.urls:
        assert url.startswith("/") and not url.startswith("//"), url
        asset = await client.get(url)
        assert asset.status_code == 200, url
        assert len(asset.content) > 1000, url
    assert "/openapi.json" in resp.text
    assert (await client.get("/openapi.json")).status_code == 200
