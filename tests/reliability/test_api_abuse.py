"""The API under abuse, as a real uvicorn process: what tests/api (auth per route, 413 in
process, tampered cursors, schemathesis) does not cover yet.

- every protected route the app has (enumerated, so a new route without a key check fails);
- a declared 100 MB body refused with 413 before it is read, and a 5,000-event batch;
- slow clients (slowloris headers, a trickled body) do not hold up other requests.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
import urllib.request
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import pytest

from services.app import create_app
from services.settings import ApiSettings
from streams.local.embedded import Server, free_port, terminate

READ, INGEST, ADMIN = "abuse-read-0123", "abuse-ingest-0123", "abuse-admin-0123"
KEYS = f"{READ}:read,{INGEST}:ingest,{ADMIN}:admin"


@pytest.fixture
def api(broker: Server, redis_server: Server, tmp_path: Any) -> Iterator[str]:
    """`pulse api` (uvicorn) on a free loopback port; yields its base URL."""
    port = free_port()
    env = {
        **os.environ,
        "PULSE_API_PORT": str(port),
        "PULSE_API_KEYS": KEYS,
        "PULSE_REDIS_URL": f"redis://127.0.0.1:{redis_server.port}/0",
        "PULSE_BROKER_URL": f"kafka://127.0.0.1:{broker.port}",
        "PULSE_VIEW_PREFIX": "abuse",
    }
    log = open(tmp_path / "api.log", "wb")  # noqa: SIM115
    proc = subprocess.Popen(
        [sys.executable, "-m", "services"], env=env, stdout=log, stderr=subprocess.STDOUT
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while True:
        try:
            urllib.request.urlopen(url + "/healthz", timeout=1)
            break
        except OSError:
            if time.monotonic() > deadline or proc.poll() is not None:
                terminate(proc)
                raise AssertionError((tmp_path / "api.log").read_text()) from None
            time.sleep(0.2)
    yield url
    terminate(proc)


@pytest.fixture
async def client(api: str) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=api, timeout=10) as c:
        yield c


# The session takes a key; the clock tells only the time (the live page reads it before sign-in).
PUBLIC = {"/healthz", "/readyz", "/metrics", "/live/session", "/live/clock"}


def protected_routes() -> list[tuple[str, str]]:
    """Every documented (method, path) but the public ones, with example path parameters."""
    spec = create_app(ApiSettings(api_keys=KEYS)).openapi()  # type: ignore[arg-type]
    routes = []
    for path, ops in spec["paths"].items():
        if path in PUBLIC:
            continue
        path = path.replace("{user_id}", "u-1").replace("{stage}", "active")
        routes += [(m.upper(), path.replace("{tier}", "gold")) for m in ops]
    return routes


async def status(client: httpx.AsyncClient, method: str, path: str, key: str | None) -> int:
    """The response status, without reading a body (the live feed streams forever)."""
    headers = {"X-API-Key": key} if key is not None else {}
    async with client.stream(method, path, headers=headers, json=[]) as resp:
        if resp.status_code == 403:
            await resp.aread()
            assert resp.json()["error"]["code"] == "insufficient_scope"
        return resp.status_code


async def test_every_protected_route_refuses_missing_wrong_and_other_scope_keys(
    client: httpx.AsyncClient,
) -> None:
    routes = protected_routes()
    assert len(routes) >= 8, routes
    for method, path in routes:
        assert await status(client, method, path, None) == 401, (method, path)
        assert await status(client, method, path, READ + "x") == 401, (method, path)
        assert await status(client, method, path, f"Bearer {READ}") == 401, (method, path)
        codes = [await status(client, method, path, key) for key in (READ, INGEST, ADMIN)]
        # Exactly one scope opens each route; the others are refused with 403.
        assert sorted(c == 403 for c in codes) == [False, True, True], (method, path, codes)


async def test_declared_huge_body_and_huge_batch_are_413_without_reading_them(
    api: str, client: httpx.AsyncClient
) -> None:
    host, port = api.removeprefix("http://").split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    writer.write(
        b"POST /v1/events HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        + f"X-API-Key: {INGEST}\r\nContent-Length: {100 << 20}\r\n\r\n[".encode()
    )
    await writer.drain()
    status = await asyncio.wait_for(reader.readline(), 5)  # no 100 MB needed first
    assert status.split()[1] == b"413", status
    writer.close()
    batch = [{"event_id": f"e{i}", "user_id": "u", "type": "x", "ts": 1} for i in range(5000)]
    resp = await client.post("/v1/events", json=batch, headers={"X-API-Key": INGEST})
    assert resp.status_code == 413
    assert resp.json()["error"]["code"] in ("batch_too_large", "payload_too_large")


async def test_slow_clients_do_not_hold_up_other_requests(
    api: str, client: httpx.AsyncClient
) -> None:
    host, port = api.removeprefix("http://").split(":")
    slow: list[asyncio.StreamWriter] = []
    for _ in range(100):  # slowloris: headers that never end
        _, writer = await asyncio.open_connection(host, int(port))
        writer.write(b"GET /v1/stats HTTP/1.1\r\nHost: x\r\n")
        slow.append(writer)
    _, trickle = await asyncio.open_connection(host, int(port))
    trickle.write(
        b"POST /v1/events HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        + f"X-API-Key: {INGEST}\r\nContent-Length: 100000\r\n\r\n[".encode()
    )
    slow.append(trickle)
    try:
        for second in range(5):
            for n, writer in enumerate(slow):
                writer.write(
                    f"X-Slow-{second}-{n}: 1\r\n".encode() if writer is not trickle else b" "
                )
                await writer.drain()
            started = time.monotonic()
            resp = await client.get("/v1/stats", headers={"X-API-Key": READ})
            assert resp.status_code == 200, resp.text
            health = await client.get("/healthz")
            assert health.status_code == 200
            # A held-up request would wait for the slow clients, which stay open all along (the
            # client gives up after 10 s); the bound leaves room for a loaded CI machine.
            assert time.monotonic() - started < 3.0
            await asyncio.sleep(1)
    finally:
        for writer in slow:
            writer.close()
