"""GET /v1/stats/retention over the view's retention counts as the worker's write script keeps
them (real redis-server)."""

from __future__ import annotations

import httpx
import redis.asyncio as aioredis

from services.settings import ApiSettings
from streams.core.contract import Event
from streams.core.engine import apply_event
from streams.core.eventtime import DAY_MS, parse_ts
from streams.core.policy import Policy
from streams.core.state import UserState
from streams.view.writer import View
from tests.api.conftest import READ_KEY, ClientFactory, auth

MONDAY = parse_ts("2026-11-23T00:00:00Z")


def _user(user_id: str, *days: float) -> UserState:
    state = None
    for n, day in enumerate(days):
        event = Event(f"{user_id}-{n}", user_id, "page_view", MONDAY + int(day * DAY_MS))
        state = apply_event(state, event, Policy()).state
    assert state is not None
    return state


async def test_retention_triangle_of_day_and_week_cohorts(
    make_client: ClientFactory, settings: ApiSettings, redis: aioredis.Redis, prefix: str
) -> None:
    view = View(redis, prefix)
    for state in (
        _user("a", 0, 1, 8),  # Monday, Tuesday, Tuesday of the next week
        _user("b", 0, 2),
        _user("c", 1, 1.5),  # Tuesday only (twice)
        _user("d", 8),  # the next week
    ):
        assert await view.write(state, [])
        assert not await view.write(state, [])  # a redelivery: the same version counts nothing
    # The event-time clock stands on the second Wednesday (day 9).
    frozen = settings.model_copy(
        update={"clock_origin_ms": MONDAY + 9 * DAY_MS + 3_600_000, "clock_rate": 1e-9}
    )
    policy = Policy(retention_days=10, retention_weeks=3)
    async with make_client(frozen, policy) as client:
        resp = await client.get("/v1/stats/retention?period=day&cohorts=2", headers=auth(READ_KEY))
        assert resp.status_code == 200, resp.text
        body = resp.json()
        assert (body["period"], body["periods"]) == ("day", 10)
        assert body["as_of"] == "2026-12-02T01:00:00.000Z"
        days = body["cohorts"]
        assert [(c["cohort"], c["start"], c["size"]) for c in days] == [
            ("2026-11-24", "2026-11-24", 1),
            ("2026-12-01", "2026-12-01", 1),
        ]
        assert days[0]["active"] == [1, 0, 0, 0, 0, 0, 0, 0, 0, None, None]  # day 8: so far
        assert days[1]["active"] == [1, 0] + [None] * 9
        monday = (
            await client.get("/v1/stats/retention?period=day&cohorts=3", headers=auth(READ_KEY))
        ).json()["cohorts"][0]
        assert (monday["cohort"], monday["size"]) == ("2026-11-23", 2)
        assert monday["active"][:10] == [2, 1, 1, 0, 0, 0, 0, 0, 1, 0]
        assert monday["active_rate"][:3] == [1.0, 0.5, 0.5]
        assert monday["still_active"][:10] == [2, 2, 2, 1, 1, 1, 1, 1, 1, 0]
        assert monday["active"][10] is None and monday["still_active_rate"][3] == 0.5

        weeks = (await client.get("/v1/stats/retention", headers=auth(READ_KEY))).json()
        assert (weeks["period"], weeks["periods"]) == ("week", 3)
        assert [(c["cohort"], c["start"], c["size"]) for c in weeks["cohorts"]] == [
            ("2026-W48", "2026-11-23", 3),
            ("2026-W49", "2026-11-30", 1),
        ]
        assert weeks["cohorts"][0]["active"] == [3, 1, None, None]
        assert weeks["cohorts"][0]["still_active"] == [3, 1, None, None]
        assert weeks["cohorts"][1]["active"] == [1, None, None, None]

        # An erased user leaves their cohorts.
        await view.erase("d")
        weeks = (await client.get("/v1/stats/retention", headers=auth(READ_KEY))).json()
        assert [c["cohort"] for c in weeks["cohorts"]] == ["2026-W48"]


async def test_retention_rejects_unknown_periods_and_cohort_counts(
    client: httpx.AsyncClient,
) -> None:
    resp = await client.get("/v1/stats/retention?period=month", headers=auth(READ_KEY))
    assert resp.status_code == 422
    error = resp.json()["error"]
    assert error["code"] == "validation_error"
    assert "query.period" in error["message"] and "'day' or 'week'" in error["message"]
    for bad in ("0", "367", "x"):
        resp = await client.get(f"/v1/stats/retention?cohorts={bad}", headers=auth(READ_KEY))
        assert resp.status_code == 422 and "query.cohorts" in resp.json()["error"]["message"]
    assert (await client.get("/v1/stats/retention")).status_code == 401
    empty = await client.get("/v1/stats/retention?period=day", headers=auth(READ_KEY))
    assert empty.status_code == 200 and empty.json()["cohorts"] == []
