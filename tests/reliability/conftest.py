"""Fault-injection fixtures: the integration Stack, plus brokers and Redis servers a test owns."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from streams.local.embedded import Server, free_port, start_redis, start_tansu
from tests.integration import conftest as integration
from tests.integration.conftest import Stack, StackFactory, _new_stack

# The integration fixtures, for this package's tests too.
broker = integration.broker
redis_server = integration.redis_server
make_stack = integration.make_stack
stack = integration.stack

pytestmark = pytest.mark.integration


def long_runs() -> bool:
    """Scenarios beyond `make test`'s time budget run with PULSE_RELIABILITY_LONG=1."""
    return os.environ.get("PULSE_RELIABILITY_LONG", "") not in ("", "0")


def start_extra_worker(stack: Stack, **overrides: str) -> subprocess.Popen[bytes]:
    """Another worker of the stack's group, with its own metrics port (and any overrides)."""
    n = len(stack.procs)
    env = {**stack.env, "PULSE_METRICS_PORT": str(free_port())}
    env.update({f"PULSE_{k.upper()}": v for k, v in overrides.items()})
    log = open(stack.workdir / f"worker-{n}.log", "wb")  # noqa: SIM115
    proc = subprocess.Popen(
        [sys.executable, "-m", "streams.cli", "worker"],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    stack.procs.append(proc)
    return proc


@pytest.fixture
def own_servers() -> Iterator[list[Server]]:
    """Servers a test starts itself (stopped at the end, whatever their state)."""
    servers: list[Server] = []
    yield servers
    for s in servers:
        try:
            s.proc.send_signal(18)  # SIGCONT: a paused server must be able to stop
        except ProcessLookupError:
            pass
        s.stop()


OwnStack = Callable[..., Any]


@pytest.fixture
async def own_broker_stack(
    own_servers: list[Server], redis_server: Server, tmp_path: Path
) -> AsyncIterator[OwnStack]:
    """Build a Stack on a Tansu broker of its own (so it can be restarted or paused)."""
    made: list[Stack] = []

    async def factory(*, start: bool = True, **overrides: str) -> tuple[Stack, Server]:
        server = start_tansu(log_dir=tmp_path)
        own_servers.append(server)
        s = await _new_stack(server, redis_server, tmp_path / f"own{len(made)}", overrides, start)
        made.append(s)
        return s, server

    yield factory
    for s in made:
        s.stop()


__all__ = ["Stack", "StackFactory", "long_runs", "start_extra_worker", "start_redis"]


@pytest.fixture
async def own_redis_stack(
    own_servers: list[Server], broker: Server, tmp_path: Path
) -> AsyncIterator[tuple[Stack, Server]]:
    """A Stack (started worker) whose Redis view is a redis-server of its own (to kill)."""
    server = start_redis()
    own_servers.append(server)
    s = await _new_stack(broker, server, tmp_path / "own-redis", {}, True)
    yield s, server
    s.stop()
