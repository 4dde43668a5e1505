"""GET /v1/segments/priority: whom to act on, by risk x value, holdout users marked."""

from __future__ import annotations

from datetime import datetime

import httpx
import pytest
from msgspec.structs import replace

from streams.core.eventtime import DAY_MS
from streams.core.holdout import assign_group
from streams.core.policy import Policy
from streams.core.windows import DayBucket
from streams.view.writer import View
from tests.api.conftest import READ_KEY, auth
from tests.api.seed import _TODAY, user_state

N_TYPES = len(Policy().event_types) + 1


def _holdout_id() -> str:
    return next(
        f"never-warned-{n}"
        for n in range(1000)
        if assign_group(f"never-warned-{n}", Policy()) == "holdout"
    )


async def _user(view: View, user_id: str, risk: float, spend: float, **changes: object) -> None:
    """An at_risk user with `spend` on one day of the last 90 (and 500.00 a year ago)."""
    buckets = (
        DayBucket(_TODAY - 100, (0,) * N_TYPES, 50_000, True),
        DayBucket(_TODAY - 10, (0,) * N_TYPES, round(spend * 100), True),
    )
    state = replace(user_state(user_id, "at_risk", "silver", risk, 1), buckets=buckets, **changes)
    assert await view.write(state, [])


async def test_users_are_listed_by_risk_times_value_with_holdout_users_marked(
    client: httpx.AsyncClient, view: View
) -> None:
    hold = _holdout_id()
    await _user(view, "p1", 0.9, 100)
    await _user(view, "p2", 0.5, 300, tier="gold")
    await _user(view, "p3", 1.0, 0)
    await _user(view, "p4", 0.2, 0)
    await _user(view, "p5", 1.0, 0)
    await _user(view, "h1", 0.8, 50, recall_group="holdout")  # warned while in the holdout
    await _user(view, hold, 0.1, 10)
    active = replace(user_state("a1", "active", "silver", 0.9, 1))
    assert await view.write(active, [])

    resp = await client.get("/v1/segments/priority", headers=auth(READ_KEY))
    assert resp.status_code == 200, resp.text
    body = resp.json()
    items = body["items"]
    assert [i["user_id"] for i in items] == ["p2", "p1", "h1", hold, "p3", "p5", "p4"]
    assert [i["priority"] for i in items] == [150, 90, 40, 1, 0, 0, 0]
    assert [i["value"] for i in items] == [300, 100, 50, 10, 0, 0, 0]  # not the old 500
    assert body["value_window_days"] == 90 and body["next_cursor"] is None
    marked = {i["user_id"]: (i["group"], i["do_not_contact"]) for i in items}
    assert marked["h1"] == ("holdout", True) and marked[hold] == ("holdout", True)
    for uid in ("p1", "p2", "p3", "p4", "p5"):  # never warned: the policy's draw decides
        group = assign_group(uid, Policy())
        assert marked[uid] == (group, group == "holdout")
    assert ("treated", False) in marked.values()
    first = items[0]
    assert first["stage"] == "at_risk" and first["tier"] == "gold"
    assert first["stage_since"] == "2026-11-01T00:00:00.000Z"
    assert first["last_active"] == "2026-11-20T08:00:00.000Z"
    as_of = datetime.fromisoformat(body["as_of"]).timestamp() * 1000
    last = datetime.fromisoformat(first["last_active"]).timestamp() * 1000
    assert first["silent_days"] == pytest.approx((as_of - last) / DAY_MS, abs=0.01)

    # Paged with the cursor: the same order, every user once.
    seen, cursor = [], None
    while True:
        url = "/v1/segments/priority?limit=2" + (f"&cursor={cursor}" if cursor else "")
        page = (await client.get(url, headers=auth(READ_KEY))).json()
        seen += [i["user_id"] for i in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == [i["user_id"] for i in items]

    gold = await client.get("/v1/segments/priority?tier=gold", headers=auth(READ_KEY))
    assert [i["user_id"] for i in gold.json()["items"]] == ["p2"]
    active_only = await client.get("/v1/segments/priority?stage=active", headers=auth(READ_KEY))
    assert [i["user_id"] for i in active_only.json()["items"]] == ["a1"]


async def test_priority_refuses_a_foreign_cursor_an_unknown_stage_and_no_key(
    client: httpx.AsyncClient, view: View
) -> None:
    for n in range(3):
        await _user(view, f"q{n}", 0.5, n)
    page = (await client.get("/v1/segments/priority?limit=1", headers=auth(READ_KEY))).json()
    cursor = page["next_cursor"]
    other = await client.get(
        f"/v1/segments/priority?limit=1&stage=active&cursor={cursor}", headers=auth(READ_KEY)
    )
    assert other.status_code == 400 and other.json()["error"]["code"] == "invalid_cursor"
    bad = await client.get("/v1/segments/priority?stage=gone", headers=auth(READ_KEY))
    assert bad.status_code == 422
    assert (await client.get("/v1/segments/priority")).status_code == 401
