"""`make soak`: the embedded stack under steady load for a while; RSS, lag and latency per minute.

Starts Tansu, redis-server and one worker (memory store, 4 partitions, 1 s sweeps), publishes
events at a steady rate (real event times, a fixed population of users) and samples, every
10 s, the worker's RSS, its consumer lag (sum over partitions) and the consume-to-emit
latency (from the worker's histogram, per interval). Prints one line per minute and a
verdict: RSS, lag and latency must stay flat (last minutes against the second minute).
Writes every sample to `--out` (JSON). Not part of `make test`.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

import msgspec
from aiokafka import AIOKafkaProducer

from streams.local.embedded import free_port, start_embedded, terminate
from streams.settings import WorkerSettings
from streams.worker.topics import ensure_topics

BUCKETS_METRIC = "pulse_consume_to_emit_seconds_bucket"


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def scrape(url: str) -> dict[str, float]:
    try:
        text = urllib.request.urlopen(url, timeout=5).read().decode()
    except OSError:
        return {}
    out: dict[str, float] = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.rpartition(" ")
            out[name] = float(value)
    return out


def lag(m: dict[str, float]) -> float:
    return sum(v for k, v in m.items() if k.startswith("pulse_consumer_lag{"))


def buckets(m: dict[str, float]) -> list[tuple[float, float]]:
    rows = []
    for k, v in m.items():
        if k.startswith(BUCKETS_METRIC + "{"):
            le = k.split('le="', 1)[1].split('"', 1)[0]
            rows.append((float("inf") if le == "+Inf" else float(le), v))
    return sorted(rows)


def quantile(
    before: list[tuple[float, float]], after: list[tuple[float, float]], q: float
) -> float:
    """Upper bucket bound holding the q-quantile of the observations between two scrapes."""
    prev = dict(before)
    delta = [(le, c - prev.get(le, 0.0)) for le, c in after]
    total = delta[-1][1] if delta else 0.0
    if total <= 0:
        return 0.0
    for le, c in delta:
        if c >= q * total:
            return le
    return float("inf")


async def produce(bootstrap: str, topic: str, rate: int, users: int, stop: asyncio.Event) -> int:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=20)
    await producer.start()
    rng = random.Random(5)
    sent = 0
    t0 = time.monotonic()
    try:
        while not stop.is_set():
            due = int((time.monotonic() - t0) * rate)
            futs = []
            while sent < due:
                user = f"s{rng.randrange(users):05d}"
                etype = rng.choice(("page_view", "session_start", "page_view", "purchase"))
                doc: dict[str, Any] = {
                    "event_id": f"e{sent}",
                    "user_id": user,
                    "type": etype,
                    "ts": int(time.time() * 1000),
                }
                if etype == "purchase":
                    doc["amount"] = "12.50"
                futs.append(await producer.send(topic, msgspec.json.encode(doc), key=user.encode()))
                sent += 1
            if futs:
                await asyncio.gather(*futs)
            await asyncio.sleep(0.05)
    finally:
        await producer.stop()
    return sent


async def soak(minutes: float, rate: int, users: int, out: Path) -> int:
    workdir = Path(tempfile.mkdtemp(prefix="pulse-soak-"))
    emb = start_embedded(log_dir=workdir)
    worker: subprocess.Popen[bytes] | None = None
    try:
        metrics_port = free_port()
        env = {
            **os.environ,
            "PULSE_BROKER_URL": emb.broker_url,
            "PULSE_REDIS_URL": emb.redis_url,
            "PULSE_PARTITIONS": "4",
            "PULSE_SWEEP_INTERVAL_SECONDS": "1",
            "PULSE_METRICS_PORT": str(metrics_port),
            "PULSE_DATA_DIR": str(workdir / "data"),
        }
        settings = WorkerSettings(broker_url=emb.broker_url, partitions=4)
        await ensure_topics(settings)
        worker = subprocess.Popen(
            [sys.executable, "-m", "streams.cli", "worker"],
            env=env,
            stdout=open(workdir / "worker.log", "wb"),  # noqa: SIM115
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        url = f"http://127.0.0.1:{metrics_port}/metrics"
        while "pulse_sweeps_total" not in scrape(url) or scrape(url)["pulse_sweeps_total"] < 4:
            if worker.poll() is not None:
                raise SystemExit(f"worker exited: see {workdir / 'worker.log'}")
            await asyncio.sleep(0.5)
        print(f"soak: worker up (log {workdir / 'worker.log'}); {rate} events/s, {users} users")
        stop = asyncio.Event()
        producing = asyncio.create_task(
            produce(settings.bootstrap, settings.events_topic, rate, users, stop)
        )
        samples: list[dict[str, Any]] = []
        start = time.monotonic()
        prev = scrape(url)
        print("minute  rss_MiB  lag_max  p50_s   p99_s   consumed")
        while time.monotonic() - start < minutes * 60:
            await asyncio.sleep(10)
            if worker.poll() is not None:
                raise SystemExit(f"worker exited with {worker.returncode}")
            m = scrape(url)
            samples.append(
                {
                    "t_s": round(time.monotonic() - start, 1),
                    "rss_kib": rss_kib(worker.pid),
                    "lag": lag(m),
                    "p50_s": quantile(buckets(prev), buckets(m), 0.5),
                    "p99_s": quantile(buckets(prev), buckets(m), 0.99),
                    "consumed": m.get("pulse_events_consumed_total", 0.0),
                }
            )
            prev = m
            if len(samples) % 6 == 0:
                last = samples[-6:]
                print(
                    f"{len(samples) // 6:6d}  {last[-1]['rss_kib'] / 1024:7.1f}  "
                    f"{max(s['lag'] for s in last):7.0f}  {max(s['p50_s'] for s in last):6.3f}  "
                    f"{max(s['p99_s'] for s in last):6.3f}  {last[-1]['consumed']:.0f}",
                    flush=True,
                )
        stop.set()
        sent = await producing
        await asyncio.sleep(3)
        consumed = scrape(url).get("pulse_events_consumed_total", 0.0)
        minute2 = samples[6:12] or samples
        tail = samples[-6:]
        verdict = {
            "minutes": minutes,
            "rate": rate,
            "users": users,
            "sent": sent,
            "consumed": consumed,
            "rss_mib_minute2": max(s["rss_kib"] for s in minute2) / 1024,
            "rss_mib_last": max(s["rss_kib"] for s in tail) / 1024,
            "lag_max": max(s["lag"] for s in samples),
            "lag_max_last_minute": max(s["lag"] for s in tail),
            "p99_s_minute2": max(s["p99_s"] for s in minute2),
            "p99_s_last": max(s["p99_s"] for s in tail),
        }
        flat = (
            verdict["rss_mib_last"] <= verdict["rss_mib_minute2"] * 1.25 + 10
            and verdict["lag_max_last_minute"] <= max(2 * rate, 1000)
            and verdict["p99_s_last"] <= max(2 * verdict["p99_s_minute2"], 0.25)
            and consumed >= sent
        )
        verdict["flat"] = flat
        out.write_text(json.dumps({"verdict": verdict, "samples": samples}, indent=1))
        print(json.dumps(verdict, indent=1))
        return 0 if flat else 1
    finally:
        if worker is not None:
            terminate(worker)
        emb.stop()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--minutes", type=float, default=10)
    parser.add_argument("--rate", type=int, default=500, help="events per second")
    parser.add_argument("--users", type=int, default=2000)
    parser.add_argument("--out", type=Path, default=Path(".pulse/soak.json"))
    args = parser.parse_args()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    return asyncio.run(soak(args.minutes, args.rate, args.users, args.out))


if __name__ == "__main__":
    sys.exit(main())
