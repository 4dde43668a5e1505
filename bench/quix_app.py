"""Peer contender: the naive job (per-user counts by type + spend) as a Quix Streams app.

What bench/naive.py does with two Faust tables, written in Quix Streams' own idiom: one
`StreamingDataFrame` over the input topic (JSON values, the user id as the message key, so
Quix scopes the state to the user) and one `sdf.update(..., stateful=True)` that keeps, in
that user's state, a count per event type and the spend of purchases. The state is Quix's
default: RocksDB with changelog topics (`use_changelog_topics=True`), at-least-once; every
checkpoint flushes the changelog, then commits the group's offsets, which is what the
harness's clock waits for. The checkpoint interval is Faust's commit interval (2.8 s) rather
than Quix's 5 s, so that no contender waits longer than the Faust ones for its last commit.

Runs in any interpreter with quixstreams and prometheus-client (bench/requirements-peers.txt):
it imports nothing from this repository. Exposes `bench_events_consumed_total` on
127.0.0.1:--metrics-port and stops itself (SIGTERM) after --max-seconds.

    python -m bench.quix_app --bootstrap 127.0.0.1:9092 --topic T --group G --metrics-port P

On the embedded broker Quix needs the input topic created with `retention.ms` and
`retention.bytes` (Tansu's DescribeConfigs returns only the configs given at creation, and
Quix sizes its changelog topics from them): the harness creates it so.
"""

from __future__ import annotations

import argparse
import os
import signal
import threading
from typing import Any

from prometheus_client import CollectorRegistry, Counter, start_http_server
from quixstreams import Application, State

REGISTRY = CollectorRegistry()
CONSUMED = Counter("bench_events_consumed", "Records consumed", registry=REGISTRY)
COMMIT_INTERVAL_S = 2.8  # Faust's default broker_commit_interval


def count(event: dict[str, Any], state: State) -> None:
    """One event into its user's state: +1 for its type, + amount to spend on a purchase."""
    CONSUMED.inc()
    kind = event["type"]
    state.set(kind, state.get(kind, 0) + 1)
    if kind == "purchase" and event.get("amount"):
        state.set("spend", state.get("spend", 0.0) + event["amount"])


def build_app(args: argparse.Namespace) -> Application:
    app = Application(
        broker_address=args.bootstrap,
        consumer_group=args.group,
        auto_offset_reset="earliest",
        commit_interval=COMMIT_INTERVAL_S,
        state_dir=args.state_dir,
        use_changelog_topics=True,
        # Same group timing as every other contender on Tansu (its joins wait half of it).
        consumer_extra_config={"session.timeout.ms": 10_000, "heartbeat.interval.ms": 1_000},
        loglevel="INFO",
    )
    topic = app.topic(args.topic, key_deserializer="str", value_deserializer="json")
    sdf = app.dataframe(topic)
    sdf = sdf.update(count, stateful=True)
    return app


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.quix_app", description=__doc__)
    parser.add_argument("--bootstrap", required=True)
    parser.add_argument("--topic", required=True)
    parser.add_argument("--group", required=True)
    parser.add_argument("--metrics-port", type=int, required=True)
    parser.add_argument("--state-dir", default=".pulse/bench/quix-state")
    parser.add_argument("--max-seconds", type=float, default=3600)
    args = parser.parse_args()
    app = build_app(args)
    start_http_server(args.metrics_port, addr="127.0.0.1", registry=REGISTRY)
    stopper = threading.Timer(args.max_seconds, os.kill, (os.getpid(), signal.SIGTERM))
    stopper.daemon = True
    stopper.start()
    app.run()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
