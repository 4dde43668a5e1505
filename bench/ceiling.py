"""Contender 1, the ceiling: a raw aiokafka consumer that reads and JSON-decodes the input and
does nothing else (no state, no outputs). It commits its offsets after every fetched batch.

    python -m bench.ceiling --bootstrap 127.0.0.1:9092 --topic T --group G --metrics-port P

Exposes `bench_events_consumed_total` on 127.0.0.1:P like the other contenders, and exits by
itself after --max-seconds.
"""

from __future__ import annotations

import argparse
import asyncio
import time

import msgspec
from aiokafka import AIOKafkaConsumer
from prometheus_client import CollectorRegistry, Counter, start_http_server

REGISTRY = CollectorRegistry()
CONSUMED = Counter("bench_events_consumed", "Records consumed", registry=REGISTRY)


async def consume(args: argparse.Namespace) -> int:
    consumer = AIOKafkaConsumer(
        args.topic,
        bootstrap_servers=args.bootstrap,
        group_id=args.group,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        session_timeout_ms=10_000,
        heartbeat_interval_ms=1_000,
    )
    decode = msgspec.json.decode
    await consumer.start()
    deadline = time.monotonic() + args.max_seconds
    decoded = 0
    try:
        while time.monotonic() < deadline:
            batch = await consumer.getmany(timeout_ms=500)
            for msgs in batch.values():
                CONSUMED.inc(len(msgs))
                for m in msgs:
                    decode(m.value)
                decoded += len(msgs)
            if batch:
                await consumer.commit()
    finally:
        await consumer.stop()
    print(f"ceiling: decoded {decoded} records, stopping after {args.max_seconds}s", flush=True)
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.ceiling", description=__doc__)
    parser.add_argument("--bootstrap", required=True)
    parser.add_argument("--topic", required=True)
    parser.add_argument("--group", required=True)
    parser.add_argument("--metrics-port", type=int, required=True)
    parser.add_argument("--max-seconds", type=float, default=3600)
    args = parser.parse_args()
    start_http_server(args.metrics_port, addr="127.0.0.1", registry=REGISTRY)
    return asyncio.run(consume(args))


if __name__ == "__main__":
    raise SystemExit(main())
