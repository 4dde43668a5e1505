"""The state API against the real redis-server and Tansu broker (session fixtures).

Each test gets its own view prefix (so its keys never meet another test's) and, when it needs
the broker, its own events topic.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any

import httpx
import pytest
import redis.asyncio as aioredis
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from services.app import create_app
from services.settings import ApiSettings
from streams.core.policy import Policy
from streams.local.embedded import Server, free_port
from streams.view.writer import View
from tests.integration.conftest import broker, redis_server  # noqa: F401

pytestmark = pytest.mark.integration

READ_KEY = "read-key-0123456789"
INGEST_KEY = "ingest-key-0123456789"
ADMIN_KEY = "admin-key-0123456789"
ALL_KEY = "all-key-0123456789"
API_KEYS = f"{READ_KEY}:read,{INGEST_KEY}:ingest,{ADMIN_KEY}:admin,{ALL_KEY}:read+ingest+admin"

ClientFactory = Callable[..., AbstractAsyncContextManager[httpx.AsyncClient]]


@pytest.fixture
def prefix() -> str:
    return f"t{uuid.uuid4().hex[:10]}"


@pytest.fixture
async def redis(redis_server: Server) -> AsyncIterator[aioredis.Redis]:  # noqa: F811
    client = aioredis.Redis(host="127.0.0.1", port=redis_server.port, decode_responses=True)
    yield client
    await client.aclose()


@pytest.fixture
async def view(redis_server: Server, prefix: str) -> AsyncIterator[View]:  # noqa: F811
    """The worker's view writer on the test's redis-server and key prefix."""
    v = View(aioredis.Redis(host="127.0.0.1", port=redis_server.port), prefix)
    yield v
    await v.client.aclose()


@pytest.fixture
def settings(redis_server: Server, broker: Server, prefix: str) -> ApiSettings:  # noqa: F811
    """Settings for this test: its own view prefix and events topic name (not yet created)."""
    return ApiSettings(
        redis_url=f"redis://127.0.0.1:{redis_server.port}/0",
        broker_url=f"kafka://127.0.0.1:{broker.port}",
        events_topic=f"{prefix}-user-events",
        view_prefix=prefix,
        api_keys=API_KEYS,  # type: ignore[arg-type]
        broker_timeout_seconds=10,
    )


@pytest.fixture
async def topic(settings: ApiSettings) -> str:
    """Create this test's events topic (2 partitions) on the session broker."""
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(settings.events_topic, 2, 1)])
    finally:
        await admin.close()
    return settings.events_topic


@asynccontextmanager
async def _client(
    settings: ApiSettings, policy: Policy | None = None
) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(settings, policy)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://api") as client:
            yield client


@pytest.fixture
def make_client() -> ClientFactory:
    """`async with make_client(settings[, policy]) as client`: an app with its lifespan
    running (the policy's tiers are the ones it accepts; the defaults without one)."""
    return _client


@pytest.fixture
async def client(settings: ApiSettings) -> AsyncIterator[httpx.AsyncClient]:
    async with _client(settings) as c:
        yield c


@pytest.fixture
def closed_broker_settings(settings: ApiSettings) -> ApiSettings:
    """Settings whose broker URL points at a free (closed) loopback port."""
    return settings.model_copy(
        update={"broker_url": f"kafka://127.0.0.1:{free_port()}", "broker_timeout_seconds": 3}
    )


def auth(key: str) -> dict[str, str]:
    return {"X-API-Key": key}


async def read_topic(bootstrap: str, topic: str, timeout: float = 20) -> list[Any]:
    """Every record of `topic` up to the partitions' high watermarks."""
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap, group_id=None, enable_auto_commit=False
    )
    await consumer.start()
    records: list[Any] = []
    try:
        parts = consumer.partitions_for_topic(topic)
        deadline = time.monotonic() + timeout
        while not parts and time.monotonic() < deadline:
            await consumer._client.force_metadata_update()
            parts = consumer.partitions_for_topic(topic)
            if not parts:
                await asyncio.sleep(0.1)
        assert parts, f"topic {topic} has no partitions"
        tps = [TopicPartition(topic, p) for p in sorted(parts)]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        ends = await consumer.end_offsets(tps)
        while time.monotonic() < deadline:
            positions = [await consumer.position(tp) for tp in tps]
            if all(pos >= ends[tp] for pos, tp in zip(positions, tps, strict=True)):
                return records
            batch = await consumer.getmany(timeout_ms=300)
            for msgs in batch.values():
                records.extend(msgs)
    finally:
        await consumer.stop()
    raise AssertionError(f"timed out reading {topic}: {len(records)} records")
