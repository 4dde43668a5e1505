"""POST /v1/events and DELETE /v1/users/{id} against the real Tansu broker."""

from __future__ import annotations

import json
import time
from typing import Any

import httpx
import pytest

from services.settings import ApiSettings
from tests.api.conftest import ADMIN_KEY, ALL_KEY, INGEST_KEY, ClientFactory, auth, read_topic


def _event(n: int, user: str = "u-1", **extra: Any) -> dict[str, Any]:
    return {
        "event_id": f"e-{n}",
        "user_id": user,
        "type": "page_view",
        "ts": time.time_ns() // 1_000_000 - 1000,
        **extra,
    }


async def test_mixed_batch_accepts_valid_and_publishes_them(
    client: httpx.AsyncClient, settings: ApiSettings, topic: str
) -> None:
    far_future = time.time_ns() // 1_000_000 + 3_600_000
    events: list[Any] = [
        _event(1, "u-1", type="purchase", amount=19.90),  # number kept as sent
        _event(2, "u-2"),
        {"event_id": "e-3", "user_id": "u-3", "type": "page_view"},  # no ts
        _event(4, "u-4", ts=far_future),
        _event(5, "u-5", type="Bad Type"),
        "not an object",
        _event(7, "u-1", amount="-1"),
        _event(8, "u-3", ts="2026-11-22T10:00:00+01:00", properties={"x": [1, 2]}),
        _event(9, "u-9", properties={"pad": "x" * 70_000}),
    ]
    body = json.dumps({"events": events}).replace("19.9", "19.90")
    resp = await client.post(
        "/v1/events",
        content=body,
        headers={**auth(INGEST_KEY), "content-type": "application/json"},
    )
    assert resp.status_code == 200, resp.text
    out = resp.json()
    assert (out["accepted"], out["rejected"]) == (3, 6)
    results = out["results"]
    assert [r["index"] for r in results] == list(range(9))
    assert [r["status"] for r in results] == [
        "accepted",
        "accepted",
        "rejected",
        "rejected",
        "rejected",
        "rejected",
        "rejected",
        "accepted",
        "rejected",
    ]
    assert results[0] == {"index": 0, "status": "accepted", "event_id": "e-1"}
    reasons = {r["index"]: r["reason"] for r in results if r["status"] == "rejected"}
    assert reasons == {
        2: "missing_field",
        3: "timestamp_out_of_range",
        4: "invalid_value",
        5: "not_an_object",
        6: "invalid_value",
        8: "payload_too_large",
    }
    assert "'ts'" in results[2]["detail"]

    records = await read_topic(settings.bootstrap, topic)
    assert sorted((r.key, r.value) for r in records) == sorted(
        (e["user_id"].encode(), json.dumps(e).replace("19.9", "19.90").encode())
        for e in (events[0], events[1], events[7])
    )
    # The original bytes of each event are what is published (19.90 stays 19.90).
    assert any(b'"amount": 19.90' in r.value for r in records)


async def test_bare_array_and_all_rejected(
    client: httpx.AsyncClient, settings: ApiSettings, topic: str
) -> None:
    resp = await client.post("/v1/events", json=[_event(1), _event(2)], headers=auth(ALL_KEY))
    assert resp.status_code == 200
    assert resp.json()["accepted"] == 2
    resp = await client.post("/v1/events", json=[{"user_id": "x"}], headers=auth(INGEST_KEY))
    assert resp.status_code == 200
    assert resp.json()["accepted"] == 0 and resp.json()["results"][0]["reason"] == "missing_field"
    assert len(await read_topic(settings.bootstrap, topic)) == 2


@pytest.mark.parametrize(
    ("body", "status", "code"),
    [
        (b"{not json", 400, "invalid_json"),
        (b"", 400, "invalid_json"),
        (b'{"evts": []}', 422, "invalid_batch"),
        (b'"hello"', 422, "invalid_batch"),
        (b"[]", 422, "empty_batch"),
        (b'{"events": []}', 422, "empty_batch"),
    ],
)
async def test_malformed_batches(
    client: httpx.AsyncClient, body: bytes, status: int, code: str
) -> None:
    resp = await client.post("/v1/events", content=body, headers=auth(INGEST_KEY))
    assert resp.status_code == status
    assert resp.json()["error"]["code"] == code


async def test_oversized_batch_and_body_are_413(
    settings: ApiSettings, make_client: ClientFactory
) -> None:
    small = settings.model_copy(update={"max_batch": 3, "max_body_bytes": 4096})
    async with make_client(small) as client:
        resp = await client.post(
            "/v1/events", json=[_event(i) for i in range(4)], headers=auth(INGEST_KEY)
        )
        assert resp.status_code == 413
        assert resp.json()["error"]["code"] == "batch_too_large"
        big = [_event(1, properties={"pad": "x" * 5000})]
        resp = await client.post("/v1/events", json=big, headers=auth(INGEST_KEY))
        assert resp.status_code == 413
        assert resp.json()["error"]["code"] == "payload_too_large"

        async def stream() -> Any:  # no Content-Length: the limit holds while reading
            for _ in range(10):
                yield b" " * 1000

        resp = await client.post("/v1/events", content=stream(), headers=auth(INGEST_KEY))
        assert resp.status_code == 413
    # Defaults: 500 events, 1 MiB.
    async with make_client(settings) as client:
        resp = await client.post(
            "/v1/events", json=[_event(i) for i in range(501)], headers=auth(INGEST_KEY)
        )
        assert resp.status_code == 413


async def test_broker_unreachable_is_503_with_retry_after(
    closed_broker_settings: ApiSettings, make_client: ClientFactory
) -> None:
    async with make_client(closed_broker_settings) as client:  # the app starts anyway
        resp = await client.post("/v1/events", json=[_event(1)], headers=auth(INGEST_KEY))
        assert resp.status_code == 503
        assert resp.headers["retry-after"] == str(closed_broker_settings.retry_after_seconds)
        err = resp.json()["error"]
        assert err["code"] == "broker_unavailable"
        assert "accepted" not in resp.text
        resp = await client.delete("/v1/users/u-1", headers=auth(ADMIN_KEY))
        assert resp.status_code == 503 and "retry-after" in resp.headers
        # Nothing to publish (all rejected): no broker needed.
        resp = await client.post("/v1/events", json=[{"x": 1}], headers=auth(INGEST_KEY))
        assert resp.status_code == 200 and resp.json()["rejected"] == 1


async def test_delete_produces_a_tombstone(
    client: httpx.AsyncClient, settings: ApiSettings, topic: str
) -> None:
    resp = await client.delete("/v1/users/u-77", headers=auth(ADMIN_KEY))
    assert resp.status_code == 202
    assert resp.json() == {"status": "erasure_requested", "user_id": "u-77"}
    records = await read_topic(settings.bootstrap, topic)
    assert [(r.key, r.value) for r in records] == [(b"u-77", None)]
