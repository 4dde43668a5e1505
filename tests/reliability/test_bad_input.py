"""Bad input at volume: every hostile record in the DLQ with its reason, every good one counted,
the worker never restarts and its memory stays bounded.

`make test` sends 2,000 bad records (and 3 of 1 MiB) among 2,000 good ones; with
PULSE_RELIABILITY_LONG=1 it sends the issue's 10,000 (and 10 of 1 MiB).
"""

from __future__ import annotations

import base64
from pathlib import Path

from aiokafka import AIOKafkaProducer

from .conftest import Stack, StackFactory, long_runs
from .faults import per_user, total, traffic
from .hostile import Hostile, hostile


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS")


async def send_mixed(
    stack: Stack, good: list[tuple[bytes, bytes]], bad: list[Hostile]
) -> dict[tuple[int, int], tuple[str, frozenset[str]]]:
    """Send a bad record after every good one, then the remaining bad ones; returns where
    each bad record landed (partition, offset) with its kind and accepted reasons."""
    producer = AIOKafkaProducer(
        bootstrap_servers=stack.bootstrap, acks="all", max_request_size=4 << 20, linger_ms=5
    )
    await producer.start()
    placed: dict[tuple[int, int], tuple[str, frozenset[str]]] = {}
    topic = stack.settings.events_topic
    try:
        sends = []
        bad_iter = iter(bad)
        for key, value in good:
            sends.append((None, await producer.send(topic, value, key=key)))
            item = next(bad_iter, None)
            if item is not None:
                kind, bkey, bvalue, reasons = item
                sends.append(((kind, reasons), await producer.send(topic, bvalue, key=bkey)))
        for kind, bkey, bvalue, reasons in bad_iter:
            sends.append(((kind, reasons), await producer.send(topic, bvalue, key=bkey)))
        for tag, fut in sends:
            meta = await fut
            if tag is not None:
                placed[(meta.partition, meta.offset)] = tag
    finally:
        await producer.stop()
    return placed


async def test_hostile_records_all_dead_lettered_good_ones_counted_worker_unharmed(
    make_stack: StackFactory,
) -> None:
    stack = await make_stack()
    worker = stack.procs[0]
    n_bad, n_mb = (10_000, 10) if long_runs() else (2_000, 3)
    good = traffic(2000, 50, seed=41)
    bad = hostile(n_bad, [f"u{i:03d}" for i in range(50)], seed=42, megabyte_payloads=n_mb)

    # Warm up (the table, the publisher, the view writer) before the memory baseline.
    await stack.produce(good[:200])
    await stack.states(lambda s: total(s) >= 200)
    rss_before = rss_mib(worker.pid)

    # Two waves, each a bad record after every good one, then the rest of its bad ones:
    # memory may grow in the first (buffers, allocator arenas), not again in the second.
    half = len(bad) // 2
    placed = await send_mixed(stack, good[200:1100], bad[:half])
    await stack.states(lambda s: total(s) >= 1100, timeout=120)
    await stack.outputs(stack.settings.dlq_topic, lambda d: len(d) >= half)
    rss_wave1 = rss_mib(worker.pid)
    placed.update(await send_mixed(stack, good[1100:], bad[half:]))
    assert len(placed) == len(bad)

    states = await stack.states(lambda s: total(s) >= 2000, timeout=120)
    assert {u: s.total_events for u, s in states.items()} == dict(per_user(good))
    letters = await stack.outputs(stack.settings.dlq_topic, lambda d: len(d) >= len(bad))
    got = {}
    for d in letters:
        src = d["source"]
        got[(src["partition"], src["offset"])] = d
    assert set(got) == set(placed)
    assert len(letters) == len(bad)  # each once: nothing was redelivered
    wrong = {
        (kind, got[pos]["reason"])
        for pos, (kind, reasons) in placed.items()
        if got[pos]["reason"] not in reasons
    }
    assert not wrong
    assert all(d["detail"] for d in letters)
    big = [d for pos, d in got.items() if placed[pos][0] == "megabyte"]
    assert len(big) == n_mb
    assert all(len(base64.b64decode(d["original_b64"])) > 1 << 20 for d in big)

    assert worker.poll() is None and stack.procs == [worker]
    log = stack.worker_log()
    for sign in ("Traceback", "crashed", "Restarting", "internal error", "CRITICAL"):
        assert sign not in log, sign
    rss_wave2 = rss_mib(worker.pid)
    print(f"bad={len(bad)} good=2000 RSS MiB {rss_before:.1f} {rss_wave1:.1f} {rss_wave2:.1f}")
    assert rss_wave1 - rss_before < 64, (rss_before, rss_wave1)
    assert rss_wave2 - rss_wave1 < 16, (rss_wave1, rss_wave2)
