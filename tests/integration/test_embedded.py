"""The embedded servers are real: the broker and Redis answer real clients on loopback."""

from __future__ import annotations

import redis.asyncio as aioredis
from aiokafka.admin import AIOKafkaAdminClient

from streams.local.embedded import Server


async def test_embedded_redis_answers_real_commands(redis_server: Server) -> None:
    client = aioredis.Redis(host="127.0.0.1", port=redis_server.port)
    try:
        assert await client.ping()
        async with client.pipeline(transaction=True) as pipe:
            pipe.set("pulse:probe", "1").incr("pulse:probe")
            assert await pipe.execute() == [True, 2]
    finally:
        await client.aclose()


async def test_embedded_broker_lists_topics(broker: Server) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=f"127.0.0.1:{broker.port}")
    await admin.start()
    try:
        assert isinstance(await admin.list_topics(), list)
    finally:
        await admin.close()
