"""`pulse run`: the whole pipeline on loopback: Tansu, redis-server, a worker, the demo, a feed.

Starts every process itself, prints where to look and a live feed of what Pulse emits, and
stops everything it started on Ctrl-C (or SIGTERM), worker first, then the servers.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import secrets
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import msgspec
from aiokafka import AIOKafkaConsumer

from streams.core.eventtime import format_ts
from streams.local.demo import run_demo
from streams.local.embedded import Embedded, free_port, start_embedded, terminate
from streams.settings import WorkerSettings
from streams.worker.topics import ensure_topics

RUN_DIR = Path(".pulse/run")


def run_stack(users: int, rate: float, partitions: int) -> int:
    """Run until interrupted; returns the process exit code."""
    RUN_DIR.mkdir(parents=True, exist_ok=True)
    logging.getLogger("aiokafka").setLevel(logging.WARNING)
    print("pulse: starting Tansu and redis-server on 127.0.0.1 ...", flush=True)
    emb = start_embedded(log_dir=RUN_DIR)
    worker: subprocess.Popen[bytes] | None = None
    api: subprocess.Popen[bytes] | None = None
    try:
        origin = int(time.time() * 1000)
        metrics_port = free_port()
        env = {
            **os.environ,
            "PULSE_BROKER_URL": emb.broker_url,
            "PULSE_PARTITIONS": str(partitions),
            "PULSE_CLOCK_ORIGIN_MS": str(origin),
            "PULSE_CLOCK_RATE": str(rate),
            "PULSE_SWEEP_INTERVAL_SECONDS": "1",
            "PULSE_METRICS_PORT": str(metrics_port),
            "PULSE_DATA_DIR": str(RUN_DIR / "worker"),
            "PULSE_REDIS_URL": emb.redis_url,
        }
        settings = WorkerSettings(
            broker_url=emb.broker_url,
            partitions=partitions,
            clock_origin_ms=origin,
            clock_rate=rate,
            metrics_port=metrics_port,
        )
        asyncio.run(ensure_topics(settings))
        log_path = RUN_DIR / "worker.log"
        worker = subprocess.Popen(
            [sys.executable, "-m", "streams.cli", "worker"],
            env=env,
            stdout=open(log_path, "wb"),
            stderr=subprocess.STDOUT,  # noqa: SIM115
            start_new_session=True,
        )
        api_port = free_port()
        api_key = "demo-" + secrets.token_urlsafe(12)
        api_env = {
            **env,
            "PULSE_API_PORT": str(api_port),
            "PULSE_API_KEYS": f"{api_key}:read+ingest+admin",
        }
        api = subprocess.Popen(
            [sys.executable, "-m", "services"],
            env=api_env,
            stdout=open(RUN_DIR / "api.log", "wb"),
            stderr=subprocess.STDOUT,  # noqa: SIM115
            start_new_session=True,
        )
        _banner(emb, settings, log_path, users, rate, f"http://127.0.0.1:{api_port}", api_key)
        asyncio.run(_live(settings, origin, rate, users, worker))
        return 0
    finally:
        print("\npulse: stopping the worker, the broker and Redis ...", flush=True)
        for proc in (api, worker):
            if proc is not None:
                terminate(proc)
        emb.stop()
        print("pulse: stopped.", flush=True)


def _banner(
    emb: Embedded,
    s: WorkerSettings,
    log_path: Path,
    users: int,
    rate: float,
    api_url: str,
    api_key: str,
) -> None:
    day_s = 86_400 / rate
    print(
        f"""
  Pulse is running on the embedded stack (Ctrl-C stops everything).

  live view        {api_url}/            (sign in with the demo key below)
  state API        {api_url}/docs        demo API key: {api_key}
                   curl -H 'X-API-Key: {api_key}' {api_url}/v1/stats

  broker (Tansu)   {emb.broker_url}
  Redis view       {emb.redis_url}   (keys pulse:user:<id>, pulse:seg:..., pulse:count:...)
  worker metrics   http://127.0.0.1:{s.metrics_port}/metrics
  worker log       {log_path}
  input topic      {s.events_topic}      dead letters  {s.dlq_topic}
  output topics    {s.lifecycle_topic}, {s.warnings_topic}, {s.tiers_topic}

  The demo publishes {users} users (loyal, declining, churning, big spenders, newcomers) on an
  accelerated event-time clock: one virtual day every {day_s:.0f} s. Expect tier upgrades
  at once, churn warnings within a minute, dormant users after a few minutes.
""",
        flush=True,
    )


async def _live(
    s: WorkerSettings, origin: int, rate: float, users: int, worker: subprocess.Popen[bytes]
) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    tasks = [
        asyncio.create_task(
            run_demo(
                s.bootstrap, s.events_topic, origin_ms=origin, rate=rate, users=users, stop=stop
            )
        ),
        asyncio.create_task(_feed(s, stop)),
        asyncio.create_task(_watch(worker, stop)),
    ]
    await stop.wait()
    for task in tasks:
        task.cancel()
    for task in tasks:
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await task


async def _watch(worker: subprocess.Popen[bytes], stop: asyncio.Event) -> None:
    while worker.poll() is None:
        await asyncio.sleep(0.5)
    print(f"pulse: the worker exited with code {worker.returncode}; see its log", flush=True)
    stop.set()


def describe(topic: str, doc: dict[str, Any], s: WorkerSettings) -> str | None:
    """One feed line for an output or dead-letter record (None: too common to show)."""
    if topic == s.dlq_topic:
        return f"dead letter    {doc.get('user_id') or '?':<16} {doc['reason']}: {doc['detail']}"
    when = format_ts(doc["event_time_ms"])[:16].replace("T", " ")
    user = doc["user_id"]
    if doc["kind"] == "churn_warning":
        holdout = " (holdout: not contacted)" if doc.get("group") == "holdout" else ""
        return (
            f"{when}  WARNING  {user:<16} {doc['reason']} risk={doc['risk_score']:.2f} "
            f"silent {doc['figures']['silence_days']:.1f}d{holdout}"
        )
    if doc["kind"] == "recall_reactivated":
        return (
            f"{when}  back     {user:<16} {doc['days_to_return']:.1f}d after the warning "
            f"({doc['group']}, {doc['from_stage']} -> {doc['to_stage']})"
        )
    if doc["kind"] == "tier_changed":
        if doc["direction"] == "initial" and doc["to_tier"] == "bronze":
            return None
        return (
            f"{when}  tier     {user:<16} {doc['from_tier'] or '-'} -> {doc['to_tier']} "
            f"({doc['direction']}, 90d spend {doc['figures']['spend_window']:.2f})"
        )
    if doc["from_stage"] is None:
        return None
    return f"{when}  stage    {user:<16} {doc['from_stage']} -> {doc['to_stage']} ({doc['reason']})"


async def _feed(s: WorkerSettings, stop: asyncio.Event) -> None:
    topics = [s.lifecycle_topic, s.warnings_topic, s.tiers_topic, s.dlq_topic]
    consumer = AIOKafkaConsumer(
        *topics, bootstrap_servers=s.bootstrap, group_id=None, auto_offset_reset="earliest"
    )
    await consumer.start()
    counts: Counter[str] = Counter()
    shown_dead = 0
    last_summary = time.monotonic()
    try:
        while not stop.is_set():
            batch = await consumer.getmany(timeout_ms=500)
            for tp, records in batch.items():
                for r in records:
                    doc = msgspec.json.decode(r.value)
                    counts[tp.topic] += 1
                    line = describe(tp.topic, doc, s)
                    if tp.topic == s.dlq_topic:
                        shown_dead += 1
                        if shown_dead == 8:
                            line = "dead letter    (further dead letters are only counted)"
                        elif shown_dead > 8:
                            line = None
                    if line:
                        print(line, flush=True)
            if time.monotonic() - last_summary > 15:
                last_summary = time.monotonic()
                print("-- so far: " + ", ".join(f"{t} {counts[t]}" for t in topics), flush=True)
    finally:
        await consumer.stop()
