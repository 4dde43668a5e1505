"""Retention cohorts live (worker, Redis view, GET /v1/stats/retention, `pulse rebuild-view`)
and in `pulse replay` are exactly those an independent pandas computation finds in the raw
events: the demo history, and the CDNOW sample (purchases as activity) moved to recent dates
by whole weeks, since the live pipeline refuses 1997 event times. The users per RFM segment
in the view are the replay's too."""

from __future__ import annotations

import asyncio
import json
import time
from collections import Counter
from collections.abc import Iterator

import httpx
import pytest
import redis.asyncio as aioredis

from services.app import create_app
from services.settings import ApiSettings
from streams.core.eventtime import DAY_MS, format_ts, parse_ts
from streams.core.policy import Policy
from streams.core.retention import DAY, WEEK, cohort_doc, triangle
from streams.local.demo import build_schedule
from streams.offline.history import CsvMapping, read_history
from streams.offline.replay import replay
from streams.view.keys import rfm_counts_key
from streams.view.rebuild import rebuild_view
from streams.view.writer import View

from .conftest import StackFactory
from .retention_pandas import (
    CDNOW,
    CDNOW_COLUMNS,
    Cell,
    cdnow_events,
    demo_events,
    retention_cells,
)

Records = list[tuple[bytes | None, bytes]]
KEY = "k-0123456789"


def _demo(origin: int) -> tuple[Records, Counter[Cell]]:
    schedule = build_schedule(40, 5, origin - 61 * DAY_MS)
    records: Records = [(uid.encode(), payload) for ts, uid, payload in schedule if ts <= origin]
    return records, retention_cells(demo_events(records))


def _cdnow(origin: int) -> tuple[Records, Counter[Cell]]:
    last = parse_ts("1998-06-30T00:00:00Z")
    shift = (origin - DAY_MS - last) // DAY_MS // 7 * 7  # whole weeks: the same ISO weekdays
    mapping = CsvMapping(
        user="user_id", time="ts", amount="amount", type="", event_id="",
        delimiter="whitespace", columns=CDNOW_COLUMNS,
    )  # fmt: skip

    def moved() -> Iterator[tuple[bytes | None, bytes]]:
        for key, value in read_history(CDNOW, mapping):
            doc = json.loads(value)
            doc["ts"] = format_ts(parse_ts(doc["ts"]) + shift * DAY_MS)
            yield key, json.dumps(doc).encode()

    return list(moved()), retention_cells(cdnow_events(shift))


async def _view_cells(client: aioredis.Redis, prefix: str) -> Counter[Cell]:
    out: Counter[Cell] = Counter()
    async for key in client.scan_iter(match=f"{prefix}:retention:*:*", count=1000):
        _, _, period, cohort = key.rsplit(":", 3)
        for field, n in (await client.hgetall(key)).items():
            out[(period, int(cohort), field)] = int(n)
    return out


async def _until_equal(client: aioredis.Redis, prefix: str, want: Counter[Cell]) -> None:
    deadline = time.monotonic() + 120
    got: Counter[Cell] = Counter()
    while time.monotonic() < deadline:
        got = await _view_cells(client, prefix)
        if got == want:
            return
        await asyncio.sleep(0.5)
    missing = {k: v for k, v in want.items() if got.get(k) != v}
    raise AssertionError(f"view != pandas: {len(missing)} cells differ, e.g. {list(missing)[:5]}")


@pytest.mark.parametrize("history", ["demo", "cdnow"])
async def test_live_view_api_rebuild_and_replay_count_the_cohorts_pandas_counts(
    make_stack: StackFactory, history: str
) -> None:
    origin = int(time.time() * 1000) // DAY_MS * DAY_MS - DAY_MS  # yesterday 00:00 UTC
    records, want = (_demo if history == "demo" else _cdnow)(origin)
    policy = Policy()
    run = replay(records, policy, until=origin)
    assert +run.retention == want
    segments = Counter(s.rfm_segment for s in run.states.values() if s.rfm_segment)
    assert len(segments) >= 2

    stack = await make_stack(start=False)
    await stack.produce(records)
    stack.start_worker()
    prefix = stack.settings.view_prefix
    client = aioredis.from_url(stack.settings.redis_url, decode_responses=True)
    try:
        await _until_equal(client, prefix, want)
        # Event time reaches `origin` in every partition, as the replay's did: the users per
        # RFM segment (the segments move as recency ages) are the replay's.
        await stack.tick(origin)
        rfm_key = rfm_counts_key(prefix)
        deadline = time.monotonic() + 60
        got: dict[str, int] = {}
        while time.monotonic() < deadline:
            got = {k: int(v) for k, v in (await client.hgetall(rfm_key)).items()}
            if got == segments:
                break
            await asyncio.sleep(0.5)
        assert got == segments
        # Redis lost the view: `pulse rebuild-view` counts the cohorts again from the states.
        stack.stop()
        keys = [k async for k in client.scan_iter(match=f"{prefix}:*", count=1000)]
        await client.delete(*keys)
        raw = aioredis.from_url(stack.settings.redis_url)
        try:
            assert await rebuild_view(stack.settings, View(raw, prefix)) > 0
        finally:
            await raw.aclose()
        await _until_equal(client, prefix, want)
        rebuilt = {k: int(v) for k, v in (await client.hgetall(rfm_key)).items()}
        assert rebuilt == segments
    finally:
        await client.aclose()

    settings = ApiSettings(
        redis_url=stack.settings.redis_url,
        broker_url=stack.settings.broker_url,
        view_prefix=prefix,
        api_keys=f"{KEY}:read",  # type: ignore[arg-type]
        clock_origin_ms=origin,
        clock_rate=1e-9,
    )
    app = create_app(settings, policy)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://api") as http:
            for period, n in ((DAY, policy.retention_days), (WEEK, policy.retention_weeks)):
                resp = await http.get(
                    f"/v1/stats/retention?period={period}&cohorts=100", headers={"X-API-Key": KEY}
                )
                assert resp.status_code == 200, resp.text
                rows = triangle(want, period, n, 100, today=origin // DAY_MS)
                assert resp.json()["cohorts"] == [cohort_doc(r) for r in rows]
                assert len(rows) > 3
