"""The broker goes away: restarted empty (the embedded Tansu keeps nothing), or paused."""

from __future__ import annotations

import asyncio
import os
import signal
import time

from streams.local.embedded import Server, start_tansu
from streams.worker.exits import EXIT_BROKER_DATA_LOST
from streams.worker.topics import ensure_topics

from .conftest import OwnStack
from .faults import per_user, topic_exists, total, traffic, wait_exit


async def test_broker_restarted_empty_makes_the_worker_exit_loudly_and_recovery_is_exact(
    own_broker_stack: OwnStack, own_servers: list[Server]
) -> None:
    stack, server = await own_broker_stack()
    before = traffic(400, 20, seed=3, prefix="a", days=1)
    await stack.produce(before)
    await stack.states(lambda s: total(s) >= 400)

    # The broker dies and comes back on the same port with nothing: no topics, no offsets,
    # no changelog. An operator (or `make run`) recreates the topics; producers go on.
    server.proc.kill()
    server.proc.wait()
    own_servers.append(start_tansu(port=server.port, log_dir=stack.workdir))
    await ensure_topics(stack.settings)
    after = traffic(100, 20, seed=4, prefix="b", days=1)
    await stack.produce(after)

    produced = time.monotonic()
    code = await wait_exit(stack.procs[0], 60)
    print(f"broker restart: worker exited {code} after {time.monotonic() - produced:.1f} s")
    assert code == EXIT_BROKER_DATA_LOST, stack.worker_log()
    assert "the broker lost data this worker already handled" in stack.worker_log()
    # Nothing was folded silently into a table the broker does not back.
    changelog = stack.changelog_topic
    if await topic_exists(stack, changelog):
        assert await stack.read(changelog, None, timeout=20) == []

    # The documented recovery: republish the input, start the worker: exact figures again.
    await stack.produce(before)
    stack.start_worker()
    expected = per_user(after + before)
    states = await stack.states(lambda s: total(s) >= 500, timeout=120)
    assert {u: s.total_events for u, s in states.items()} == dict(expected)


async def test_broker_paused_past_the_session_timeout_worker_resumes_and_catches_up(
    own_broker_stack: OwnStack,
) -> None:
    stack, server = await own_broker_stack()
    records = traffic(1200, 40, seed=5, prefix="p")
    await stack.produce(records[:600])
    await stack.states(lambda s: total(s) >= 300)

    os.kill(server.proc.pid, signal.SIGSTOP)  # longer than the 10 s session timeout
    await asyncio.sleep(15)
    os.kill(server.proc.pid, signal.SIGCONT)
    await stack.produce(records[600:])

    states = await stack.states(lambda s: total(s) >= 1200, timeout=120)
    assert {u: s.total_events for u, s in states.items()} == dict(per_user(records))
    assert stack.procs[0].poll() is None, "the worker exited\n" + stack.worker_log()
