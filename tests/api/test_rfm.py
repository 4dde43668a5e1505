"""RFM value segments through the API: GET /v1/segments/rfm/{segment}, the `rfm=` filter, the
counts in GET /v1/stats and the user's document, over the view the worker's script writes."""

from __future__ import annotations

import httpx
import redis.asyncio as aioredis

from streams.core.contract import Event
from streams.core.engine import apply_event
from streams.core.eventtime import DAY_MS, parse_ts
from streams.core.policy import Policy
from streams.core.state import UserState
from streams.view.writer import View
from tests.api.conftest import READ_KEY, auth

T0 = parse_ts("2026-11-23T00:00:00Z")


def _buyer(user_id: str, *purchases: tuple[float, int]) -> UserState:
    state = None
    for n, (day, cents) in enumerate(purchases):
        ts = T0 + int(day * DAY_MS)
        event = Event(f"{user_id}-{n}", user_id, "purchase", ts, cents, True)
        state = apply_event(state, event, Policy()).state
    assert state is not None
    return state


async def test_rfm_segments_are_listed_filtered_counted_and_shown(
    client: httpx.AsyncClient, redis: aioredis.Redis, prefix: str
) -> None:
    view = View(redis, prefix)
    users = {
        "v1": _buyer("v1", (0, 10_000), (1, 10_000), (2, 10_000)),  # 535: important_value
        "v2": _buyer("v2", (0, 5_000), (1, 5_000), (2, 50_000)),  # 535, and gold
        "d1": _buyer("d1", (0, 40_000)),  # 515: important_development
        "g1": _buyer("g1", (0, 500)),  # 511: general_development
    }
    assert {u: s.rfm_segment for u, s in users.items()} == {
        "v1": "important_value",
        "v2": "important_value",
        "d1": "important_development",
        "g1": "general_development",
    }
    for state in users.values():
        assert await view.write(state, [])
    page = await client.get("/v1/segments/rfm/important_value", headers=auth(READ_KEY))
    assert page.status_code == 200, page.text
    assert [i["user_id"] for i in page.json()["items"]] == ["v1", "v2"]
    filtered = await client.get(
        "/v1/segments/stage/new?rfm=important_development", headers=auth(READ_KEY)
    )
    assert [i["user_id"] for i in filtered.json()["items"]] == ["d1"]
    by_tier = await client.get(
        f"/v1/segments/rfm/important_value?tier={users['v2'].tier}", headers=auth(READ_KEY)
    )
    assert [i["user_id"] for i in by_tier.json()["items"]] == ["v2"]  # v1 spent less
    stats = (await client.get("/v1/stats", headers=auth(READ_KEY))).json()
    assert stats["rfm_segments"] == {
        "important_value": 2,
        "important_development": 1,
        "important_retention": 0,
        "important_win_back": 0,
        "general_value": 0,
        "general_development": 1,
        "general_retention": 0,
        "general_win_back": 0,
    }
    doc = (await client.get("/v1/users/d1", headers=auth(READ_KEY))).json()
    assert doc["rfm"] == {
        "segment": "important_development",
        "recency": 5,
        "frequency": 1,
        "monetary": 5,
    }
    # An erased user leaves the segment and its count.
    await view.erase("v1")
    stats = (await client.get("/v1/stats", headers=auth(READ_KEY))).json()
    assert stats["rfm_segments"]["important_value"] == 1


async def test_an_unknown_rfm_segment_is_a_422_naming_the_segments(
    client: httpx.AsyncClient,
) -> None:
    resp = await client.get("/v1/segments/rfm/vip", headers=auth(READ_KEY))
    assert resp.status_code == 422
    message = resp.json()["error"]["message"]
    assert "path.segment" in message and "'important_value'" in message and "'vip'" in message
    resp = await client.get("/v1/segments/tier/gold?rfm=vip", headers=auth(READ_KEY))
    assert resp.status_code == 422 and "query.rfm" in resp.json()["error"]["message"]
    empty = await client.get("/v1/segments/rfm/general_win_back", headers=auth(READ_KEY))
    assert empty.status_code == 200 and empty.json()["items"] == []
