"""HTTP -> Kafka -> worker -> Redis -> HTTP: events posted to the API come back as user state."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import httpx

from services.app import create_app
from services.settings import ApiSettings

from .conftest import Stack
from .events import day_base

KEY = "roundtrip-key"


async def _poll(client: httpx.AsyncClient, path: str, want: Any, timeout: float = 60) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        r = await client.get(path, headers={"X-API-Key": KEY})
        if want(r):
            return r
        if time.monotonic() > deadline:
            raise AssertionError(f"{path}: {r.status_code} {r.text[:500]}")
        await asyncio.sleep(0.3)


async def test_events_posted_over_http_come_back_as_state_and_erase_works(stack: Stack) -> None:
    s = stack.settings
    settings = ApiSettings(
        redis_url=s.redis_url,
        broker_url=s.broker_url,
        events_topic=s.events_topic,
        warnings_topic=s.warnings_topic,
        tiers_topic=s.tiers_topic,
        view_prefix=s.view_prefix,
        api_keys=f"{KEY}:read+ingest+admin",
    )
    app = create_app(settings)
    t = day_base(1)
    events = [
        {"event_id": "h1", "user_id": "web-1", "type": "signup", "ts": t},
        {
            "event_id": "h2",
            "user_id": "web-1",
            "type": "purchase",
            "ts": t + 1000,
            "amount": "650.00",
        },
        {"event_id": "h3", "user_id": "web-1", "type": "purchase", "ts": "not a time"},
    ]
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://api") as client:
            r = await client.post("/v1/events", json={"events": events}, headers={"X-API-Key": KEY})
            assert r.status_code == 200, r.text
            assert [x["status"] for x in r.json()["results"]] == [
                "accepted",
                "accepted",
                "rejected",
            ]
            user = await _poll(
                client,
                "/v1/users/web-1",
                lambda r: r.status_code == 200 and r.json()["tier"] == "gold",
            )
            doc = user.json()
            assert doc["stage"] == "new"
            assert doc["windows"]["7d"]["events"] == 2
            assert doc["windows"]["7d"]["spend"] == 650.0
            history = await client.get("/v1/users/web-1/transitions", headers={"X-API-Key": KEY})
            kinds = [h["kind"] for h in history.json()["items"]]
            # newest first: the purchase's RFM segment and upgrade to gold, then the signup's
            # bronze and stage "new"
            assert kinds == [
                "rfm_segment_changed",
                "tier_changed",
                "tier_changed",
                "lifecycle_changed",
            ]
            seg = await client.get("/v1/segments/tier/gold", headers={"X-API-Key": KEY})
            assert [u["user_id"] for u in seg.json()["items"]] == ["web-1"]

            r = await client.delete("/v1/users/web-1", headers={"X-API-Key": KEY})
            assert r.status_code == 202, r.text
            await _poll(client, "/v1/users/web-1", lambda r: r.status_code == 404)
            seg = await client.get("/v1/segments/tier/gold", headers={"X-API-Key": KEY})
            assert seg.json()["items"] == []
