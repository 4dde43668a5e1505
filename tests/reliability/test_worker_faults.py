"""Workers die with SIGKILL mid-stream: nothing lost, nothing counted twice, outputs exact.

The reference is independent of the broker: a plain-Python count of the input, and the replay
oracle (streams/offline/replay.py: the same pure core, no broker) for the outputs.
"""

from __future__ import annotations

import asyncio
import time

from streams.core.policy import Policy
from streams.offline.replay import replay

from .conftest import Stack, StackFactory, start_extra_worker
from .faults import (
    outputs_by_key,
    per_user,
    spend_cents,
    total,
    traffic,
    without_emitted_at,
)


async def owns_events_partitions(stack: Stack, n: int, timeout: float = 60) -> None:
    """Until worker n's log shows an assignment with events partitions in it."""
    log = stack.workdir / f"worker-{n}.log"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        text = log.read_text(errors="replace")
        _, _, assigned = text.rpartition("Setting newly assigned partitions")
        if f"| {stack.settings.events_topic} " in assigned.split("for group", 1)[0]:
            return
        await asyncio.sleep(0.5)
    raise AssertionError(f"worker {n} was never assigned events partitions\n{stack.worker_log()}")


async def test_kill9_mid_stream_loses_no_output_and_duplicates_are_exact_repeats(
    make_stack: StackFactory,
) -> None:
    stack = await make_stack()
    records = traffic(3000, 40, seed=11)
    records += [records[i] for i in (5, 500, 1500, 2500)]  # producer retries
    await stack.produce(records[:1500])
    await stack.states(lambda s: total(s) >= 600)
    producing = asyncio.create_task(stack.produce(records[1500:]))
    await asyncio.sleep(0.5)
    stack.kill9()
    await producing
    stack.start_worker()
    states = await stack.states(lambda s: total(s) >= 3000, timeout=180)
    assert {u: s.total_events for u, s in states.items()} == dict(per_user(records))
    spend = spend_cents(records)
    assert {u: s.total_spend_cents for u, s in states.items() if spend[u]} == dict(spend)

    # Let event time reach now everywhere (silences, new-user periods), live and in replay.
    now = int(time.time() * 1000)
    await stack.tick(now)
    run = replay(records, Policy(), now_ms=now, until=now)
    expected = {o.idempotency_key: o for o, _ in run.outputs}
    assert len(expected) == len(run.outputs) > 100
    live = await outputs_by_key(stack, set(expected))
    assert set(live) == set(expected)
    repeats = sum(len(d) - 1 for d in live.values())
    print(f"kill -9: {len(expected)} outputs, {repeats} re-emitted as exact repeats")
    for key, docs in live.items():
        assert docs[0]["user_id"] == expected[key].user_id
        assert docs[0]["event_time_ms"] == expected[key].ts
        # A redelivery re-emits the same decision, never a different one under the same key.
        assert all(without_emitted_at(d) == without_emitted_at(docs[0]) for d in docs), key


async def test_two_workers_one_killed_and_back_count_every_event_once(
    make_stack: StackFactory,
) -> None:
    stack = await make_stack(partitions="4")
    records = traffic(4000, 100, seed=21)
    chunks = [records[i : i + 1000] for i in range(0, 4000, 1000)]
    second = start_extra_worker(stack)
    await stack.produce(chunks[0])
    await stack.states(lambda s: total(s) >= 1000, timeout=120)
    await owns_events_partitions(stack, 1)

    # Kill one of the two mid-stream: its partitions move to the survivor (after the session
    # timeout), which gets their uncommitted records again.
    producing = asyncio.create_task(stack.produce(chunks[1]))
    await asyncio.sleep(0.5)
    second.kill()
    second.wait()
    await producing
    await stack.states(lambda s: total(s) >= 2000, timeout=120)

    # It comes back: partitions move again, while records keep arriving.
    start_extra_worker(stack)
    await owns_events_partitions(stack, 2)
    for chunk in chunks[2:]:
        await stack.produce(chunk)
        await asyncio.sleep(2)
    states = await stack.states(lambda s: total(s) >= 4000, timeout=180)
    assert {u: s.total_events for u, s in states.items()} == dict(per_user(records))
    spend = spend_cents(records)
    assert {u: s.total_spend_cents for u, s in states.items() if spend[u]} == dict(spend)
    assert all(p.poll() is None for p in stack.procs[1:] if p is not second)

    now = int(time.time() * 1000)
    await stack.tick(now)
    run = replay(records, Policy(), now_ms=now, until=now)
    expected = {o.idempotency_key for o, _ in run.outputs}
    live = await outputs_by_key(stack, expected)
    assert set(live) == expected
    repeats = sum(len(d) - 1 for d in live.values())
    print(f"rebalances: {len(expected)} outputs, {repeats} re-emitted as exact repeats")
    for key, docs in live.items():
        assert all(without_emitted_at(d) == without_emitted_at(docs[0]) for d in docs), key
