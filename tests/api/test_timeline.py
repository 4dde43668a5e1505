"""GET /v1/stats/timeline over the series the worker's write script keeps (real redis-server)."""

from __future__ import annotations

import httpx
from msgspec.structs import replace

from streams.core.eventtime import DAY_MS, format_ts
from streams.core.outputs import encode_output, lifecycle_changed
from streams.view.writer import View, output_item
from tests.api.conftest import READ_KEY, auth
from tests.api.seed import user_state

D0 = 1_794_873_600_000  # 2026-11-18T00:00:00Z, a bucket start
STAGES = ["new", "active", "at_risk", "dormant", "churned", "reactivated"]


def _zeros(**n: int) -> dict[str, int]:
    return {s: n.get(s, 0) for s in STAGES}


async def _walk(
    view: View, user_id: str, *steps: tuple[int, str | None, str], again: bool = False
) -> None:
    """Write the user's states one change at a time, as the worker does (`again`: writes
    the view already has, refused)."""
    for version, (day, from_stage, to_stage) in enumerate(steps, start=1):
        state = replace(user_state(user_id, to_stage, "bronze", 0.5, version), version=version)
        at = D0 + day * DAY_MS + 3_600_000
        out = lifecycle_changed(user_id, at, from_stage, to_stage, "test", {})
        item = output_item(out, encode_output(out, at).decode())
        assert await view.write(state, [item]) is not again


async def test_the_timeline_lists_entries_exits_and_populations_per_bucket(
    client: httpx.AsyncClient, view: View
) -> None:
    await _walk(view, "ann", (0, None, "new"), (2, "new", "active"))
    await _walk(view, "bob", (0, None, "new"), (1, "new", "at_risk"), (3, "at_risk", "dormant"))
    await _walk(view, "cid", (5, None, "new"))
    # Delivered again (a redelivery): counted once.
    await _walk(view, "cid", (5, None, "new"), again=True)

    resp = await client.get("/v1/stats/timeline", headers=auth(READ_KEY))
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert body["bucket_seconds"] == 86_400
    assert body["stages"] == STAGES
    buckets = body["buckets"]
    assert [b["start"] for b in buckets] == [format_ts(D0 + d * DAY_MS) for d in range(6)]
    assert [b["start_ms"] for b in buckets] == [D0 + d * DAY_MS for d in range(6)]
    assert [b["entered"] for b in buckets] == [
        _zeros(new=2),
        _zeros(at_risk=1),
        _zeros(active=1),
        _zeros(dormant=1),
        _zeros(),  # a day without a change is listed, with zeros
        _zeros(new=1),
    ]
    assert [b["left"] for b in buckets] == [
        _zeros(),
        _zeros(new=1),
        _zeros(new=1),
        _zeros(at_risk=1),
        _zeros(),
        _zeros(),
    ]
    assert [b["population"] for b in buckets] == [
        _zeros(new=2),
        _zeros(new=1, at_risk=1),
        _zeros(active=1, at_risk=1),
        _zeros(active=1, dormant=1),
        _zeros(active=1, dormant=1),
        _zeros(new=1, active=1, dormant=1),
    ]

    newest = await client.get("/v1/stats/timeline?buckets=2", headers=auth(READ_KEY))
    assert newest.json()["buckets"] == buckets[-2:]

    # An erasure leaves the stage in the newest bucket: the populations still add up.
    await view.erase("ann")
    after = (await client.get("/v1/stats/timeline", headers=auth(READ_KEY))).json()["buckets"]
    assert after[-1]["left"] == _zeros(active=1)
    assert after[-1]["population"] == _zeros(new=1, dormant=1)
    assert after[0]["population"] == _zeros(new=2)


async def test_an_empty_timeline_and_the_read_scope(client: httpx.AsyncClient) -> None:
    resp = await client.get("/v1/stats/timeline", headers=auth(READ_KEY))
    assert resp.status_code == 200, resp.text
    assert resp.json()["buckets"] == [] and resp.json()["bucket_seconds"] is None
    assert (await client.get("/v1/stats/timeline")).status_code == 401
    bad = await client.get("/v1/stats/timeline?buckets=0", headers=auth(READ_KEY))
    assert bad.status_code == 422
    spec = (await client.get("/openapi.json")).json()
    assert "/v1/stats/timeline" in spec["paths"]
    assert "/v1/segments/priority" in spec["paths"]
