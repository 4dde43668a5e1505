"""Real Tansu and redis-server processes, and a Pulse worker subprocess per test.

Each test gets its own topics and consumer group (a unique prefix), so tests never see each
other's records on the shared session broker.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import msgspec
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from streams.core.state import UserState, decode_state
from streams.local.embedded import Server, free_port, start_redis, start_tansu, terminate
from streams.settings import WorkerSettings
from streams.worker.ticks import encode_tick
from streams.worker.topics import ensure_topics

pytestmark = pytest.mark.integration


@pytest.fixture(scope="session")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    server = start_tansu(log_dir=tmp_path_factory.mktemp("tansu"))
    yield server
    server.stop()


@pytest.fixture(scope="session")
def redis_server() -> Iterator[Server]:
    server = start_redis()
    yield server
    server.stop()


@dataclass
class Stack:
    """One test's topics and worker process on the session broker."""

    settings: WorkerSettings
    env: dict[str, str]
    workdir: Path
    procs: list[subprocess.Popen[bytes]] = field(default_factory=list)

    @property
    def bootstrap(self) -> str:
        return self.settings.bootstrap

    @property
    def changelog_topic(self) -> str:
        return f"{self.settings.app_id}-user-state-changelog"

    @property
    def metrics_url(self) -> str:
        return f"http://127.0.0.1:{self.settings.metrics_port}/metrics"

    def start_worker(self) -> subprocess.Popen[bytes]:
        log = open(self.workdir / f"worker-{len(self.procs)}.log", "wb")  # noqa: SIM115
        proc = subprocess.Popen(
            [sys.executable, "-m", "streams.cli", "worker"],
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self.procs.append(proc)
        return proc

    def kill9(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGKILL)
                proc.wait()

    def stop(self) -> None:
        for proc in self.procs:
            terminate(proc)

    def worker_log(self) -> str:
        return "\n".join(
            p.read_text(errors="replace")[-4000:] for p in sorted(self.workdir.glob("worker-*.log"))
        )

    async def produce(self, records: list[tuple[bytes | None, bytes]]) -> None:
        """Send (key, value) records to the events topic, in order, and wait for the acks."""
        producer = AIOKafkaProducer(bootstrap_servers=self.bootstrap, acks="all")
        await producer.start()
        try:
            for key, value in records:
                await producer.send_and_wait(self.settings.events_topic, value, key=key)
        finally:
            await producer.stop()

    async def tick(self, now_ms: int) -> None:
        """Let event time reach now_ms in every partition (what the worker's timer does)."""
        producer = AIOKafkaProducer(bootstrap_servers=self.bootstrap, acks="all")
        await producer.start()
        try:
            for p in range(self.settings.partitions):
                await producer.send_and_wait(
                    self.settings.ticks_topic, encode_tick(now_ms), key=b"tick", partition=p
                )
        finally:
            await producer.stop()

    def metric(self, name: str) -> float:
        """The worker's current value of an unlabelled metric (0 when not exported yet)."""
        try:
            text = urllib.request.urlopen(self.metrics_url, timeout=5).read().decode()
        except OSError:
            return 0.0
        for line in text.splitlines():
            if line.startswith(f"{name} "):
                return float(line.rsplit(" ", 1)[1])
        return 0.0

    async def wait_sweeps(self, at_least: float, timeout: float = 90) -> None:
        """Until the worker has applied `at_least` tick records (sweeps) in all."""
        deadline = time.monotonic() + timeout
        while self.metric("pulse_sweeps_total") < at_least:
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"the worker applied {self.metric('pulse_sweeps_total')} of {at_least} "
                    "ticks\n--- worker log ---\n" + self.worker_log()
                )
            await asyncio.sleep(0.2)

    async def read(
        self, topic: str, done: Callable[[list[Any]], bool] | None, timeout: float = 90
    ) -> list[Any]:
        """Every record of `topic` from the start, once `done(records)` holds (or timeout).

        With `done` None: every record up to the partitions' high watermarks right now.
        """
        consumer = AIOKafkaConsumer(
            bootstrap_servers=self.bootstrap, group_id=None, enable_auto_commit=False
        )
        await consumer.start()
        records: list[Any] = []
        try:
            parts = consumer.partitions_for_topic(topic)
            while not parts:
                await consumer._client.force_metadata_update()
                parts = consumer.partitions_for_topic(topic) or set()
                if not parts:
                    await asyncio.sleep(0.2)
            tps = [TopicPartition(topic, p) for p in sorted(parts)]
            consumer.assign(tps)
            await consumer.seek_to_beginning(*tps)
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline:
                batch = await consumer.getmany(timeout_ms=300)
                for msgs in batch.values():
                    records.extend(msgs)
                if done is None:
                    marks = [consumer.highwater(tp) for tp in tps]
                    positions = [await consumer.position(tp) for tp in tps]
                    if all(m is not None and p >= m for m, p in zip(marks, positions, strict=True)):
                        return records
                elif done(records):
                    return records
        finally:
            await consumer.stop()
        raise AssertionError(
            f"timed out on {topic} with {len(records)} records\n--- worker log ---\n"
            + self.worker_log()
        )

    async def outputs(
        self,
        topic: str,
        done: Callable[[list[dict[str, Any]]], bool] | None = None,
        timeout: float = 90,
    ) -> list[dict[str, Any]]:
        """Decoded JSON records of `topic` (see `read`)."""
        decode = msgspec.json.decode

        def parsed(records: list[Any]) -> list[dict[str, Any]]:
            return [decode(r.value) for r in records]

        cond = None if done is None else (lambda rs: done(parsed(rs)))
        return parsed(await self.read(topic, cond, timeout))

    async def states(
        self, done: Callable[[dict[str, UserState]], bool], timeout: float = 90
    ) -> dict[str, UserState]:
        """The table as the changelog holds it: the latest state per user."""

        def latest(records: list[Any]) -> dict[str, UserState]:
            table: dict[str, UserState] = {}
            for r in records:
                if r.value is None:  # a tombstone: the user was erased
                    table.pop(r.key.decode(), None)
                else:
                    table[r.key.decode()] = decode_state(r.value)
            return table

        return latest(await self.read(self.changelog_topic, lambda rs: done(latest(rs)), timeout))


StackFactory = Callable[..., Any]


@pytest.fixture
async def make_stack(
    broker: Server, redis_server: Server, tmp_path: Path
) -> AsyncIterator[StackFactory]:
    """Build a Stack (own topics, started worker); keyword args override PULSE_* settings."""
    made: list[Stack] = []

    async def factory(*, start: bool = True, **overrides: str) -> Stack:
        s = await _new_stack(broker, redis_server, tmp_path / f"stack{len(made)}", overrides, start)
        made.append(s)
        return s

    yield factory
    for s in made:
        s.stop()


@pytest.fixture
async def stack(make_stack: StackFactory) -> Stack:
    """Topics for this test and a started worker (manual ticks: the timer is off)."""
    return await make_stack()  # type: ignore[no-any-return]


async def _new_stack(
    broker: Server, redis_server: Server, tmp_path: Path, overrides: dict[str, str], start: bool
) -> Stack:
    tmp_path.mkdir(parents=True, exist_ok=True)
    prefix = f"t{uuid.uuid4().hex[:8]}"
    env = {
        **os.environ,
        "PULSE_BROKER_URL": f"kafka://127.0.0.1:{broker.port}",
        "PULSE_APP_ID": f"{prefix}-pulse",
        "PULSE_EVENTS_TOPIC": f"{prefix}-user-events",
        "PULSE_DLQ_TOPIC": f"{prefix}-user-events.dlq",
        "PULSE_TICKS_TOPIC": f"{prefix}-ticks",
        "PULSE_LIFECYCLE_TOPIC": f"{prefix}-lifecycle-changes",
        "PULSE_WARNINGS_TOPIC": f"{prefix}-churn-warnings",
        "PULSE_TIERS_TOPIC": f"{prefix}-tier-changes",
        "PULSE_RFM_TOPIC": f"{prefix}-rfm-segments",
        "PULSE_PARTITIONS": "2",
        "PULSE_METRICS_PORT": str(free_port()),
        "PULSE_DATA_DIR": str(tmp_path / "data"),
        "PULSE_SWEEP_INTERVAL_SECONDS": "0",
        "PULSE_LOG_LEVEL": "info",
        "PULSE_REDIS_URL": f"redis://127.0.0.1:{redis_server.port}/0",
        "PULSE_VIEW_PREFIX": prefix,
        **{f"PULSE_{k.upper()}": v for k, v in overrides.items()},
    }
    settings = WorkerSettings(
        **{k[len("PULSE_") :].lower(): v for k, v in env.items() if k.startswith("PULSE_")}
    )
    await ensure_topics(settings)
    s = Stack(settings, env, tmp_path)
    if start:
        s.start_worker()
    return s
