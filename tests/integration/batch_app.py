"""A minimal Faust app on Pulse's batching consumer, run as a subprocess by test_batch_consumer.

Writes one JSON line per delivered batch: [[topic, partition, first, last, count], ...].
Argv: bootstrap, app id, topic, output file, partitions.
"""

from __future__ import annotations

import json
import sys
from typing import Any

import faust

from streams.worker.app import PulseApp


def main() -> None:
    bootstrap, app_id, topic, out, partitions = sys.argv[1:6]
    app = PulseApp(
        app_id,
        broker=f"kafka://{bootstrap}",
        topic_partitions=int(partitions),
        web_enabled=False,
        autodiscover=False,
        consumer_auto_offset_reset="earliest",
        broker_commit_interval=0.2,
        # As the worker: Tansu holds a rejoin until the last member's session has expired.
        broker_session_timeout=10,
        broker_heartbeat_interval=1,
        broker_max_poll_records=50,
    )
    app.tansu_compat = True
    source = app.topic(topic, key_type=bytes, value_type=bytes, partitions=int(partitions))
    log = open(out, "a", buffering=1)  # noqa: SIM115

    async def on_batch(records: list[Any], fetched_at: float) -> None:
        runs: dict[tuple[str, int], list[int]] = {}
        for r in records:
            runs.setdefault((r.topic, r.partition), []).append(r.offset)
        rows = [[t, p, offs[0], offs[-1], len(offs)] for (t, p), offs in runs.items()]
        for (_, _), offs in runs.items():
            assert offs == sorted(offs), offs
        log.write(json.dumps(rows) + "\n")

    app.topics.add(source)
    app.batch_topics = frozenset(source.topics)
    app.batch_handler = on_batch
    faust.Worker(app, loglevel="warning").execute_from_commandline()


if __name__ == "__main__":
    main()
