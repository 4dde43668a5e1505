"""Redis goes away under load (12 s here; the writer's backoff is capped at 5 s, so a minute
behaves the same, only longer): the API says 503, the stream goes on, the view converges."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from typing import Any

import httpx

from services.app import create_app
from services.settings import ApiSettings
from streams.core.state import UserState
from streams.local.embedded import Server, start_redis

from .conftest import Stack
from .faults import per_user, total, traffic

KEY = "reliability-key"


def api_settings(stack: Stack) -> ApiSettings:
    s = stack.settings
    return ApiSettings(
        redis_url=s.redis_url,
        broker_url=s.broker_url,
        events_topic=s.events_topic,
        warnings_topic=s.warnings_topic,
        tiers_topic=s.tiers_topic,
        view_prefix=s.view_prefix,
        api_keys=f"{KEY}:read",  # type: ignore[arg-type]
        redis_timeout_seconds=1,
    )


Get = Callable[[str], Awaitable[httpx.Response]]


async def view_docs(
    get: Get, states: dict[str, UserState], timeout: float
) -> dict[str, dict[str, Any]]:
    """The API's documents for these users once they show these versions (or at the deadline)."""
    deadline = time.monotonic() + timeout
    docs: dict[str, dict[str, Any]] = {}
    while time.monotonic() < deadline:
        docs = {}
        for user in states:
            resp = await get(f"/v1/users/{user}")
            if resp.status_code == 200:
                docs[user] = resp.json()
        if len(docs) == len(states) and all(
            docs[u]["version"] == s.version for u, s in states.items()
        ):
            break
        await asyncio.sleep(0.5)
    return docs


async def test_redis_outage_api_503_stream_continues_view_converges(
    own_redis_stack: tuple[Stack, Server], own_servers: list[Server]
) -> None:
    stack, redis = own_redis_stack
    users = 40
    records = traffic(2400, users, seed=31)
    # A quarter of the users fall silent when Redis goes away: nothing brings their view back
    # but the worker noticing that Redis came back empty.
    quiet = {f"u{n:03d}" for n in range(30, users)}
    later = [r for r in records[800:] if r[0].decode() not in quiet]
    await stack.produce(records[:800])
    first = await stack.states(lambda s: total(s) >= 800)
    app = create_app(api_settings(stack))
    headers = {"X-API-Key": KEY}
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://api") as client:

            async def get(path: str) -> httpx.Response:
                return await client.get(path, headers=headers)

            # The view trails the changelog (its writer flushes in the background, every 50 ms):
            # wait until it holds the first 800 events, so the outage starts from a known view.
            before = await view_docs(get, first, timeout=30)
            assert {u: d["version"] for u, d in before.items()} == {
                u: s.version for u, s in first.items()
            }

            redis.proc.kill()
            redis.proc.wait()
            down_at = time.monotonic()
            producing = asyncio.create_task(stack.produce(later))
            for path in ("/v1/users/u000", "/v1/stats", "/v1/segments/stage/new"):
                resp = await get(path)
                assert resp.status_code == 503, (path, resp.text)
                assert resp.headers["retry-after"]
                err = resp.json()["error"]
                assert err["code"] == "view_unavailable"
                assert "Redis" in err["message"]
            await producing
            # The stream does not wait on Redis: every event reaches the table meanwhile.
            expected = per_user(records[:800] + later)
            states = await stack.states(lambda s: total(s) >= expected.total(), timeout=60)
            assert {u: s.total_events for u, s in states.items()} == dict(expected)
            assert stack.metric("pulse_view_write_failures_total") > 0
            assert stack.metric("pulse_view_pending") > 0
            await asyncio.sleep(max(0.0, 12 - (time.monotonic() - down_at)))
            assert (await get("/v1/users/u000")).status_code == 503

            # Redis comes back (empty: persistence is off) on the same port.
            own_servers.append(start_redis(port=redis.port))
            docs = await view_docs(get, states, timeout=30)
            stats = (await get("/v1/stats")).json()
    assert len(states) == users
    for user, state in states.items():
        doc = docs.get(user)
        assert doc is not None, user
        assert (doc["version"], doc["stage"], doc["tier"]) == (
            state.version,
            state.stage,
            state.tier,
        ), user
    # The counts behind /v1/stats are whole again: every user counted once, quiet ones too.
    assert stats["users"] == users
    assert {k: v for k, v in stats["stages"].items() if v} == Counter(
        s.stage for s in states.values()
    )
    assert stats["tiers"] == Counter(s.tier for s in states.values())
    assert stack.procs[0].poll() is None
    assert stack.metric("pulse_view_pending") == 0
    assert stack.metric("pulse_view_resyncs_total") == 1
