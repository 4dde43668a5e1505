"""The recall measurement is the same live and in `pulse replay`: the worker's gauges, the Redis
view's totals and GET /v1/stats/recall against the tallies of a replay of the same input."""

from __future__ import annotations

import asyncio
import time
import urllib.request
from collections.abc import Awaitable, Callable
from pathlib import Path

import httpx
import redis.asyncio as aioredis

from services.app import create_app
from services.settings import ApiSettings
from streams.core.eventtime import DAY_MS
from streams.core.holdout import Group
from streams.core.policy import load_policy
from streams.core.recall import cell_counts, compare, comparison_doc, totals_of_tallies
from streams.local.demo import build_schedule
from streams.offline.replay import replay
from streams.view.keys import parse_recall_field, recall_counts_key

from .conftest import Stack, StackFactory

Cells = dict[tuple[str, str, str, str], int]


async def _until_equal(what: str, got: Callable[[], Awaitable[Cells]], want: Cells) -> None:
    deadline = time.monotonic() + 60
    last: Cells = {}
    while time.monotonic() < deadline:
        last = await got()
        if last == want:
            return
        await asyncio.sleep(0.5)
    raise AssertionError(f"{what}: {last} != {want}")


def _gauges(stack: Stack) -> Cells:
    """pulse_recall_warnings{group,tier,reason,outcome} of the worker, zeros left out."""
    try:
        text = urllib.request.urlopen(stack.metrics_url, timeout=5).read().decode()
    except OSError:
        return {}
    out: Cells = {}
    for line in text.splitlines():
        if line.startswith("pulse_recall_warnings{"):
            labels, value = line[len("pulse_recall_warnings{") :].rsplit("} ", 1)
            parts = dict(p.split("=", 1) for p in labels.split(","))
            g, t, r, o = (parts[k].strip('"') for k in ("group", "tier", "reason", "outcome"))
            if float(value):
                out[(g, t, r, o)] = int(float(value))
    return out


async def test_worker_view_api_and_replay_measure_the_same_recall(
    make_stack: StackFactory, tmp_path: Path
) -> None:
    policy_file = tmp_path / "policy.toml"
    policy_file.write_text('holdout_fraction = 0.3\nholdout_salt = "equivalence"\n')
    policy = load_policy(policy_file)
    origin = int(time.time() * 1000) // DAY_MS * DAY_MS - DAY_MS  # yesterday 00:00 UTC
    schedule = build_schedule(40, 3, origin - 61 * DAY_MS)
    records = [(uid.encode(), payload) for ts, uid, payload in schedule if ts <= origin]
    run = replay(records, policy, now_ms=origin, until=origin)
    want: Cells = {}
    for state in run.states.values():
        for cell, n in cell_counts(state.recall_tally).items():
            want[cell] = want.get(cell, 0) + n
    overall = compare(totals_of_tallies(s.recall_tally for s in run.states.values()))
    assert overall.treated.judged and overall.holdout.judged and overall.treated.reactivated
    assert {g for g, *_ in want} == set(Group.ALL)

    # The worker's clock stands still at `origin` (a vanishing rate), so its ticks let event
    # time run exactly as far as the replay's.
    stack = await make_stack(
        start=False,
        sweep_interval_seconds="0.5",
        policy_file=str(policy_file),
        clock_origin_ms=str(origin),
        clock_rate="1e-9",
    )
    await stack.produce(records)
    stack.start_worker()

    client = aioredis.from_url(stack.settings.redis_url, decode_responses=True)
    key = recall_counts_key(stack.settings.view_prefix)

    async def view_totals() -> Cells:
        raw = await client.hgetall(key)
        return {parse_recall_field(f): int(n) for f, n in raw.items()}

    async def gauges() -> Cells:
        return await asyncio.to_thread(_gauges, stack)

    try:
        await _until_equal("Redis view", view_totals, want)
        await _until_equal("worker gauges", gauges, want)  # published every 15 s
    finally:
        await client.aclose()

    settings = ApiSettings(
        redis_url=stack.settings.redis_url,
        broker_url=stack.settings.broker_url,
        view_prefix=stack.settings.view_prefix,
        api_keys="k-0123456789:read",  # type: ignore[arg-type]
    )
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://api") as http:
            resp = await http.get("/v1/stats/recall", headers={"X-API-Key": "k-0123456789"})
    assert resp.status_code == 200
    got = resp.json()["overall"]
    for group in ("treated", "holdout"):  # the API adds each rate's own interval
        del got[group]["rate_ci_low"], got[group]["rate_ci_high"]
    assert got == comparison_doc(overall)
