"""Peer contender: the naive job (per-user counts by type + spend) as a Bytewax dataflow.

What bench/naive.py does with two Faust tables, in Bytewax's own idiom: the Kafka input
(`KafkaSource`, from the beginning), a map that decodes the JSON value and keys it by the
record key (the user id), and one `stateful_map` whose per-user state is a dict of counts per
event type plus the spend of purchases. Recovery is on (`RecoveryConfig`, SQLite partitions
in --recovery-dir): at every epoch Bytewax snapshots the input offsets and every changed
user's state. The epoch is Faust's commit interval (2.8 s) rather than Bytewax's 10 s, so
that no contender waits longer than the Faust ones for its last commit.

Bytewax keeps its input offsets in its recovery store, not in a consumer group, and the
harness stops its clock when a group's committed offsets reach the topic end. So a thread here
(`DurableOffsets`) reads the recovery store every 50 ms and commits to the consumer group
--group the input offsets a restart would resume from: the source's last snapshot before the
resume epoch (the lowest worker frontier), read the way Bytewax's own resume reads it. Those
offsets move once the epoch's state snapshots are written, the same point at which Faust and
Quix commit (after the changelog is flushed). Bytewax itself never reads those commits.

Runs in any interpreter with bytewax[kafka] and prometheus-client
(bench/requirements-peers.txt): it imports nothing from this repository. Exposes
`bench_events_consumed_total` on 127.0.0.1:--metrics-port and stops itself (SIGTERM) after
--max-seconds.

    python -m bench.bytewax_flow --bootstrap 127.0.0.1:9092 --topic T --group G --metrics-port P
"""

from __future__ import annotations

import argparse
import json
import os
import pickle
import signal
import sqlite3
import threading
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

import bytewax.operators as op
from bytewax.connectors.kafka import KafkaSource, KafkaSourceMessage
from bytewax.dataflow import Dataflow
from bytewax.outputs import DynamicSink, StatelessSinkPartition
from bytewax.recovery import RecoveryConfig, init_db_dir
from bytewax.run import cli_main
from confluent_kafka import Consumer, TopicPartition
from prometheus_client import CollectorRegistry, Counter, start_http_server

REGISTRY = CollectorRegistry()
CONSUMED = Counter("bench_events_consumed", "Records consumed", registry=REGISTRY)
FLOW_ID = "bench-naive"
EPOCH = timedelta(seconds=2.8)  # Faust's default broker_commit_interval

Message = KafkaSourceMessage[bytes | None, bytes | None]


class DurableOffsets(threading.Thread):
    """Commits to `group` the input offsets Bytewax would resume from (see above)."""

    # The latest source snapshot per partition before the resume epoch, as Bytewax's resume
    # picks it (src/recovery.rs in 0.21: snapshots with snap_epoch < the lowest frontier).
    QUERY = """
        WITH resume AS (
            SELECT MIN(worker_frontier) AS epoch FROM fronts
            WHERE ex_num = (SELECT MAX(ex_num) FROM exs)
        )
        SELECT state_key, ser_change FROM snaps AS s
        WHERE step_id = ?1 AND snap_epoch = (
            SELECT MAX(snap_epoch) FROM snaps
            WHERE step_id = s.step_id AND state_key = s.state_key
              AND snap_epoch < (SELECT epoch FROM resume)
        )
    """

    def __init__(self, db: Path, step_id: str, bootstrap: str, group: str) -> None:
        super().__init__(name="durable-offsets", daemon=True)
        self.db, self.step_id = db, step_id
        self.committer = Consumer(
            {"bootstrap.servers": bootstrap, "group.id": group, "enable.auto.commit": False}
        )
        self.committed: dict[tuple[str, int], int] = {}

    def run(self) -> None:
        conn = sqlite3.connect(f"file:{self.db}?mode=ro", uri=True, timeout=5)
        while True:
            time.sleep(0.05)
            try:
                rows = conn.execute(self.QUERY, (self.step_id,)).fetchall()
            except sqlite3.OperationalError:  # busy: the next round reads it
                continue
            changed = []
            for key, blob in rows:
                offset = pickle.loads(blob) if blob is not None else None
                idx, topic = key.split("-", 1)
                tp = (topic, int(idx))
                # Negative: still the symbolic start (OFFSET_BEGINNING), nothing read yet.
                if isinstance(offset, int) and offset >= 0 and self.committed.get(tp) != offset:
                    changed.append(TopicPartition(topic, int(idx), offset))
                    self.committed[tp] = offset
            if changed:
                self.committer.commit(offsets=changed, asynchronous=False)


class _DiscardPartition(StatelessSinkPartition[Any]):
    def write_batch(self, items: list[Any]) -> None:
        pass


class Discard(DynamicSink[Any]):
    """A sink that drops what it gets. The naive job has no output, but Bytewax wants one
    output step; this one costs a call per batch, not per item."""

    def build(self, step_id: str, worker_index: int, worker_count: int) -> _DiscardPartition:
        return _DiscardPartition()


def keyed(msg: Message) -> tuple[str, dict[str, Any]]:
    """(user id, decoded event) of one input record."""
    CONSUMED.inc()
    assert msg.key is not None and msg.value is not None
    return msg.key.decode(), json.loads(msg.value)


def count(state: dict[str, float] | None, event: dict[str, Any]) -> tuple[dict[str, float], None]:
    """One event into its user's state: +1 for its type, + amount to spend on a purchase."""
    if state is None:
        state = {}
    kind = event["type"]
    state[kind] = state.get(kind, 0) + 1
    if kind == "purchase" and event.get("amount"):
        state["spend"] = state.get("spend", 0.0) + event["amount"]
    return state, None


def build_flow(args: argparse.Namespace) -> Dataflow:
    flow = Dataflow(FLOW_ID)
    msgs = op.input("events", flow, KafkaSource([args.bootstrap], [args.topic]))
    events = op.map("decode", msgs, keyed)
    counted = op.stateful_map("counts", events, count)
    op.output("drop", counted, Discard())
    return flow


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.bytewax_flow", description=__doc__)
    parser.add_argument("--bootstrap", required=True)
    parser.add_argument("--topic", required=True)
    parser.add_argument("--group", required=True)
    parser.add_argument("--metrics-port", type=int, required=True)
    parser.add_argument("--recovery-dir", type=Path, default=Path(".pulse/bench/bytewax-recovery"))
    parser.add_argument("--max-seconds", type=float, default=3600)
    args = parser.parse_args()
    flow = build_flow(args)
    args.recovery_dir.mkdir(parents=True, exist_ok=True)
    if not any(args.recovery_dir.iterdir()):
        init_db_dir(args.recovery_dir, 1)
    start_http_server(args.metrics_port, addr="127.0.0.1", registry=REGISTRY)
    db = args.recovery_dir / "part-0.sqlite3"
    DurableOffsets(db, f"{FLOW_ID}.events", args.bootstrap, args.group).start()
    stopper = threading.Timer(args.max_seconds, os.kill, (os.getpid(), signal.SIGTERM))
    stopper.daemon = True
    stopper.start()
    cli_main(flow, epoch_interval=EPOCH, recovery_config=RecoveryConfig(args.recovery_dir))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
