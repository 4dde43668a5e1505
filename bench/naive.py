"""Contender 2, the naive Faust app: the obvious Faust implementation of the rolling counts.

One agent reads the input topic as `faust.Record`s (Faust's JSON serializer) and updates a table
for every event: the count per user and event type, and the spend per user for purchases
(`table[key] += 1`). With `--windowed`, the same tables are Faust hopping windowed tables
(7-day windows stepping by one day, relative to the event time), which is what the Faust docs
suggest for rolling counts: every event updates 7 windows per table. That covers only the 7-day
window; Pulse keeps 1/7/30/90-day windows, so this variant does less than Pulse does.

Same Faust settings as Pulse on Tansu (session timeout 10 s, heartbeat 1 s, earliest, memory
store, web off and bound to loopback). Exposes `bench_events_consumed_total` on
127.0.0.1:--metrics-port and stops itself (SIGTERM) after --max-seconds.

    python -m bench.naive --bootstrap 127.0.0.1:9092 --topic T --app-id A --metrics-port P
"""

from __future__ import annotations

import argparse
import os
import signal
import threading
from datetime import timedelta
from typing import Any

import faust
from prometheus_client import CollectorRegistry, Counter, start_http_server

REGISTRY = CollectorRegistry()
CONSUMED = Counter("bench_events_consumed", "Records consumed", registry=REGISTRY)

WINDOW = timedelta(days=7)
STEP = timedelta(days=1)


class Event(faust.Record, serializer="json"):
    event_id: str
    user_id: str
    type: str
    ts: int
    amount: float | None = None


def event_seconds(event: Any) -> float:
    """Event time of a stream event, for the windowed tables (Faust wants epoch seconds)."""
    return float(event.value.ts) / 1000.0


def build_app(args: argparse.Namespace) -> faust.App:
    app = faust.App(
        args.app_id,
        broker=f"kafka://{args.bootstrap}",
        store="memory://",
        datadir=args.datadir,
        topic_partitions=args.partitions,
        broker_session_timeout=10,
        broker_heartbeat_interval=1,
        consumer_auto_offset_reset="earliest",
        web_enabled=False,
        web_bind="127.0.0.1",
        autodiscover=False,
    )
    events = app.topic(
        args.topic,
        key_type=bytes,
        key_serializer="raw",
        value_type=Event,
        partitions=args.partitions,
    )
    counts: Any = app.Table("counts", default=int, partitions=args.partitions)
    spend: Any = app.Table("spend", default=float, partitions=args.partitions)
    if args.windowed:
        expires = WINDOW + STEP
        counts = counts.hopping(WINDOW, STEP, expires=expires).relative_to(event_seconds)
        spend = spend.hopping(WINDOW, STEP, expires=expires).relative_to(event_seconds)

    @app.agent(events, name="naive-counts")
    async def count(stream: Any) -> None:
        async for event in stream:
            CONSUMED.inc()
            counts[f"{event.user_id}:{event.type}"] += 1
            if event.type == "purchase" and event.amount:
                spend[event.user_id] += event.amount

    return app


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.naive", description=__doc__)
    parser.add_argument("--bootstrap", required=True)
    parser.add_argument("--topic", required=True)
    parser.add_argument("--app-id", required=True)
    parser.add_argument("--partitions", type=int, default=8)
    parser.add_argument("--metrics-port", type=int, required=True)
    parser.add_argument("--datadir", default=".pulse/bench/naive-data")
    parser.add_argument("--windowed", action="store_true", help="hopping windowed tables")
    parser.add_argument("--max-seconds", type=float, default=3600)
    args = parser.parse_args()
    app = build_app(args)
    start_http_server(args.metrics_port, addr="127.0.0.1", registry=REGISTRY)
    stopper = threading.Timer(args.max_seconds, os.kill, (os.getpid(), signal.SIGTERM))
    stopper.daemon = True
    stopper.start()
    faust.Worker(app, loglevel="info").execute_from_commandline()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
