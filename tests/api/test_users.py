"""GET /v1/users/{id} and its transitions, from a view seeded per streams/view/keys.py."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import redis.asyncio as aioredis
from redis.client import NEVER_DECODE

from services.settings import ApiSettings
from streams.core.policy import load_policy
from streams.core.snapshot import user_document
from streams.core.state import encode_state
from streams.local.embedded import Server
from streams.view import keys as viewkeys
from streams.view.writer import View as ViewWriter
from tests.api.conftest import READ_KEY, ClientFactory, auth
from tests.api.seed import seed_user, user_state

# GET /v1/users/u-1 for tests.api.seed's user as the API answered when the worker stored the
# document itself (before the API built it from the state): the API's shape, kept.
SEEDED_DOC = {
    "user_id": "u-1",
    "version": 7,
    "stage": "at_risk",
    "tier": "gold",
    "risk_score": 0.42,
    "stage_since": "2026-11-01T00:00:00.000Z",
    "tier_since": "2026-11-01T00:00:00.000Z",
    "first_seen": "2026-10-01T08:00:00.000Z",
    "last_seen": "2026-11-20T08:00:00.000Z",
    "last_active": "2026-11-20T08:00:00.000Z",
    "typical_gap_days": 2.0,
    "last_warning_at": None,
    "last_warning_reason": None,
    "windows": {
        "1d": {"events": 0, "by_type": {}, "spend": 0.0, "active_days": 0},
        "7d": {
            "events": 4,
            "by_type": {"page_view": 3, "purchase": 1},
            "spend": 19.9,
            "active_days": 3,
        },
        "30d": {
            "events": 4,
            "by_type": {"page_view": 3, "purchase": 1},
            "spend": 19.9,
            "active_days": 3,
        },
        "90d": {
            "events": 4,
            "by_type": {"page_view": 3, "purchase": 1},
            "spend": 19.9,
            "active_days": 3,
        },
    },
    "lifetime": {"events": 40, "spend": 120.5},
    "rfm": None,  # no purchase recorded for RFM (a state from before the segments)
    "as_of": "2026-11-22T00:00:01.000Z",
    "updated_at": "2026-11-22T00:00:01.000Z",
}


async def test_user_is_the_doc_with_version(
    client: httpx.AsyncClient, redis: aioredis.Redis, prefix: str
) -> None:
    await seed_user(redis, prefix, "u-1", stage="at_risk", tier="gold", risk=0.42, version=7)
    resp = await client.get("/v1/users/u-1", headers=auth(READ_KEY))
    assert resp.status_code == 200
    body = resp.json()
    assert body["user_id"] == "u-1"
    assert body["version"] == 7
    assert (body["stage"], body["tier"], body["risk_score"]) == ("at_risk", "gold", 0.42)
    assert body["windows"]["7d"]["by_type"] == {"page_view": 3, "purchase": 1}
    assert body["lifetime"] == {"events": 40, "spend": 120.5}
    assert body["updated_at"] == "2026-11-22T00:00:01.000Z"
    assert body == SEEDED_DOC
    assert list(body) == list(SEEDED_DOC)  # the order of the fields too


async def test_the_document_follows_the_workers_policy_file(
    make_client: ClientFactory,
    settings: ApiSettings,
    redis: aioredis.Redis,
    prefix: str,
    tmp_path: Path,
) -> None:
    """The API builds the document from the stored state with the policy the worker reads
    (PULSE_POLICY_FILE): its windows, not the built-in ones."""
    policy_file = tmp_path / "policy.toml"
    policy_file.write_text("windows_days = [7, 14, 30, 60]\ntier_window_days = 60\n")
    await seed_user(redis, prefix, "u-1", stage="at_risk", tier="gold", risk=0.42, version=7)
    async with make_client(settings.model_copy(update={"policy_file": str(policy_file)})) as c:
        body = (await c.get("/v1/users/u-1", headers=auth(READ_KEY))).json()
    assert list(body["windows"]) == ["7d", "14d", "30d", "60d"]
    expected = user_document(
        user_state("u-1", "at_risk", "gold", 0.42, 7), load_policy(str(policy_file))
    )
    assert body == expected
    assert {k: v for k, v in body.items() if k != "windows"} == {
        k: v for k, v in SEEDED_DOC.items() if k != "windows"
    }


async def test_a_user_stored_as_a_document_reads_the_same_and_a_write_brings_the_state(
    client: httpx.AsyncClient, redis: aioredis.Redis, redis_server: Server, prefix: str
) -> None:
    """A view written before the worker stored states holds each user's document: the API
    serves it as it is, and a write of the same version (a resync, `pulse rebuild-view`)
    replaces it with the state, moving no count."""
    state = user_state("u-1", "at_risk", "gold", 0.42, 7)
    await seed_user(redis, prefix, "u-1", stage="at_risk", tier="gold", risk=0.42, version=7)
    key = viewkeys.user_key(prefix, "u-1")
    await redis.hdel(key, "state")
    await redis.hset(key, "doc", json.dumps(SEEDED_DOC))
    resp = await client.get("/v1/users/u-1", headers=auth(READ_KEY))
    assert resp.json() == SEEDED_DOC

    writer = ViewWriter(aioredis.Redis(host="127.0.0.1", port=redis_server.port), prefix)
    try:
        assert await writer.write(state, [])
        assert not await writer.write(state, [])  # now the same state again: nothing to do
    finally:
        await writer.client.aclose()
    stored = dict(await redis.execute_command("HGETALL", key, **{NEVER_DECODE: True}))
    assert stored[b"state"] == encode_state(state) and b"doc" not in stored
    assert await redis.hgetall(viewkeys.stage_counts_key(prefix)) == {"at_risk": "1"}
    assert await redis.hgetall(viewkeys.tier_counts_key(prefix)) == {"gold": "1"}
    resp = await client.get("/v1/users/u-1", headers=auth(READ_KEY))
    assert resp.json() == SEEDED_DOC


async def test_unknown_user_is_404(client: httpx.AsyncClient) -> None:
    resp = await client.get("/v1/users/nobody", headers=auth(READ_KEY))
    assert resp.status_code == 404
    assert resp.json()["error"]["code"] == "user_not_found"
    assert "nobody" in resp.json()["error"]["message"]
    resp = await client.get("/v1/users/nobody/transitions", headers=auth(READ_KEY))
    assert resp.status_code == 404
    assert resp.json()["error"]["code"] == "user_not_found"


async def test_transitions_newest_first_and_bounded(
    client: httpx.AsyncClient, redis: aioredis.Redis, prefix: str
) -> None:
    await seed_user(redis, prefix, "u-2", transitions=60)  # the view keeps the newest 50
    resp = await client.get("/v1/users/u-2/transitions", headers=auth(READ_KEY))
    assert resp.status_code == 200
    items = resp.json()["items"]
    assert [t["figures"]["n"] for t in items] == list(range(59, 39, -1))  # default limit 20
    assert items[0]["kind"] == "lifecycle_changed" and items[0]["to_stage"] == "active"

    resp = await client.get("/v1/users/u-2/transitions?limit=50", headers=auth(READ_KEY))
    assert [t["figures"]["n"] for t in resp.json()["items"]] == list(range(59, 9, -1))
    resp = await client.get("/v1/users/u-2/transitions?limit=3", headers=auth(READ_KEY))
    assert len(resp.json()["items"]) == 3
    for bad in ("0", "51", "x"):
        resp = await client.get(f"/v1/users/u-2/transitions?limit={bad}", headers=auth(READ_KEY))
        assert resp.status_code == 422, bad
        assert resp.json()["error"]["code"] == "validation_error"


async def test_user_without_transitions_has_an_empty_list(
    client: httpx.AsyncClient, redis: aioredis.Redis, prefix: str
) -> None:
    await seed_user(redis, prefix, "u-3")
    resp = await client.get("/v1/users/u-3/transitions", headers=auth(READ_KEY))
    assert resp.status_code == 200
    assert resp.json() == {"user_id": "u-3", "items": []}
