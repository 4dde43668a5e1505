"""Pulse's batching consumer (streams.worker.consumer.PulseConsumer) on the real broker.

A Faust app whose topic is delivered in fetch batches must see every record exactly once, in
offset order per partition, in batches of more than one record, and Faust's commit loop must
commit the batches' offsets to the end of each partition - across a restart too.
"""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
import sys
import uuid
from pathlib import Path

from aiokafka import AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from streams.local.embedded import Server

PARTITIONS = 2


def _start(
    bootstrap: str, app_id: str, topic: str, out: Path, log: Path
) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "tests.integration.batch_app",
            bootstrap,
            app_id,
            topic,
            str(out),
            str(PARTITIONS),
        ],
        stdout=log.open("ab"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )


async def _produce(bootstrap: str, topic: str, n: int, start: int) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=5)
    await producer.start()
    try:
        futures = [
            await producer.send(topic, b"v%d" % i, key=b"k%d" % i, partition=i % PARTITIONS)
            for i in range(start, start + n)
        ]
        await asyncio.gather(*futures)
    finally:
        await producer.stop()


async def _committed(bootstrap: str, group: str, topic: str) -> dict[int, int]:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        # Tansu drops the connection when no partition list is given (tansu.md).
        tps = [TopicPartition(topic, p) for p in range(PARTITIONS)]
        offsets = await admin.list_consumer_group_offsets(group, partitions=tps)
    finally:
        await admin.close()
    return {tp.partition: meta.offset for tp, meta in offsets.items() if tp.topic == topic}


def _delivered(out: Path) -> dict[int, list[tuple[int, int, int]]]:
    """partition -> [(first, last, count)] in delivery order."""
    runs: dict[int, list[tuple[int, int, int]]] = {}
    if out.exists():
        for line in out.read_text().splitlines():
            for _topic, partition, first, last, count in json.loads(line):
                runs.setdefault(partition, []).append((first, last, count))
    return runs


async def _wait_committed(bootstrap: str, group: str, topic: str, ends: dict[int, int]) -> None:
    for _ in range(600):
        if await _committed(bootstrap, group, topic) == ends:
            return
        await asyncio.sleep(0.2)
    raise AssertionError(f"committed {await _committed(bootstrap, group, topic)} != {ends}")


async def test_batches_cover_every_offset_once_and_are_committed(
    broker: Server, tmp_path: Path
) -> None:
    bootstrap = f"127.0.0.1:{broker.port}"
    app_id = f"batch-{uuid.uuid4().hex[:8]}"
    topic = f"{app_id}-in"
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    await admin.create_topics([NewTopic(topic, PARTITIONS, 1)])
    await admin.close()
    out, log = tmp_path / "batches.jsonl", tmp_path / "app.log"

    await _produce(bootstrap, topic, 1000, 0)
    proc = _start(bootstrap, app_id, topic, out, log)
    try:
        await _wait_committed(bootstrap, app_id, topic, {0: 500, 1: 500})
        # Stopped cleanly and started again: it resumes at the committed offsets.
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=60) == 0, log.read_text()[-3000:]
        await _produce(bootstrap, topic, 200, 1000)
        proc = _start(bootstrap, app_id, topic, out, log)
        await _wait_committed(bootstrap, app_id, topic, {0: 600, 1: 600})
    finally:
        proc.kill()
        proc.wait()

    runs = _delivered(out)
    for partition in range(PARTITIONS):
        offsets = [o for first, last, count in runs[partition] for o in range(first, last + 1)]
        assert sum(count for _, _, count in runs[partition]) == len(offsets)  # contiguous runs
        assert offsets == list(range(600)), partition  # each offset once, in order
        # Batches, not records one by one (the app caps a fetch at 50 records).
        assert max(count for _, _, count in runs[partition]) > 1
        assert max(count for _, _, count in runs[partition]) <= 50
