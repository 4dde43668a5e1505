"""`pulse run`: the whole pipeline on loopback: Tansu, redis-server, a worker, the API, the demo
and a live feed.

Starts every process itself, each in its own session (so a terminal's Ctrl-C reaches only this
process, which then stops them in order), prints where to look and a live feed of what Pulse
emits, and stops everything it started, worker and API first, then the servers, and removes
their temporary folders on SIGINT (Ctrl-C), SIGTERM, SIGHUP (the terminal closed), when the
reader of its output goes away (`pulse run | head`, a `tee` stopped by Ctrl-C) or when the worker
or the API dies. A second signal during the stop cuts the wait short (SIGKILL).
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import os
import select
import shutil
import signal
import stat
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from types import FrameType
from typing import Any

import msgspec
from aiokafka import AIOKafkaConsumer

from streams.core.eventtime import format_ts, virtual_now
from streams.local.demo import run_demo
from streams.local.embedded import (
    EmbeddedError,
    Server,
    pick_port,
    signal_group,
    start_redis,
    start_tansu,
    wait_port,
)
from streams.local.state import RUN_DIR, LocalState, load_state, save_state
from streams.settings import WorkerSettings
from streams.worker.topics import ensure_topics

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
WORKER_STOP_SECONDS = 20.0
"""How long the worker and the API get to exit after SIGTERM before SIGKILL."""


class _Stopped(Exception):
    """Start-up was cut short: a stop was requested."""


class StopRequest:
    """Why `pulse run` should stop, set from signal handlers and watchers.

    The handlers only record (they never raise), so a signal cannot land between starting a
    process and remembering it: the code checks `requested` between steps.
    """

    def __init__(self) -> None:
        self.reason: str | None = None
        self.count = 0
        self.failed = False

    @property
    def requested(self) -> bool:
        return self.reason is not None

    def request(self, reason: str, *, failed: bool = False) -> None:
        self.count += 1
        self.failed = self.failed or failed
        if self.reason is None:
            self.reason = reason

    def install(self) -> None:
        for sig in STOP_SIGNALS:
            signal.signal(sig, self._on_signal)

    def _on_signal(self, signum: int, _frame: FrameType | None) -> None:
        self.request(signal.Signals(signum).name)

    def check(self) -> None:
        if self.requested:
            raise _Stopped(self.reason)


class Console:
    """stdout for people, which may go away: a closed reader (a pipe whose other end exited)
    requests a stop instead of raising BrokenPipeError, and later output goes to /dev/null."""

    def __init__(self, stop: StopRequest) -> None:
        self.stop = stop
        self.closed = False
        self._poll: select.poll | None = None
        try:
            fd = sys.stdout.fileno()
            if _is_pipe(fd):
                self._poll = select.poll()
                self._poll.register(fd, 0)  # POLLERR (reader gone) is always reported
        except (OSError, ValueError):
            pass

    def say(self, text: str) -> None:
        if self.closed:
            return
        try:
            print(text, flush=True)
        except BrokenPipeError:
            self._reader_gone()
        except OSError as exc:
            if exc.errno != errno.EPIPE:
                raise
            self._reader_gone()

    def check_reader(self) -> None:
        """Request a stop if the reader of stdout has gone, without writing."""
        if self._poll is not None and not self.closed:
            if any(ev & (select.POLLERR | select.POLLHUP) for _, ev in self._poll.poll(0)):
                self._reader_gone()

    def _reader_gone(self) -> None:
        self.closed = True
        self._poll = None
        # Python flushes stdout at exit; pointing the descriptors at /dev/null keeps that
        # flush (and stderr, when it is the same pipe, as with `2>&1 | tee`) from failing.
        devnull = os.open(os.devnull, os.O_WRONLY)
        try:
            out = os.fstat(1)
            with contextlib.suppress(OSError):
                err = os.fstat(2)
                if (err.st_dev, err.st_ino) == (out.st_dev, out.st_ino):
                    os.dup2(devnull, 2)
            os.dup2(devnull, 1)
        finally:
            os.close(devnull)
        self.stop.request("the reader of the output went away")


def _is_pipe(fd: int) -> bool:
    mode = os.fstat(fd).st_mode
    return stat.S_ISFIFO(mode) or stat.S_ISSOCK(mode)


class _Child:
    """A process `pulse run` started, with its log."""

    def __init__(self, name: str, proc: subprocess.Popen[bytes], log: Path) -> None:
        self.name = name
        self.proc = proc
        self.log = log


def run_stack(users: int, rate: float, partitions: int, seed: int = 7) -> int:
    """Run until stopped; returns the exit code: 0 when stopped by a signal or a closed
    output, 1 when something failed (a server did not start, the worker or API died)."""
    stop = StopRequest()
    stop.install()
    console = Console(stop)
    logging.getLogger("aiokafka").setLevel(logging.WARNING)
    servers: list[Server] = []
    children: list[_Child] = []
    try:
        _start_and_follow(users, rate, partitions, seed, stop, console, servers, children)
    except _Stopped:
        pass
    except EmbeddedError as exc:
        console.say(f"pulse: {exc}")
        stop.request("start-up failed", failed=True)
    finally:
        why = f" ({stop.reason})" if stop.reason else ""
        console.say(f"\npulse: stopping the worker, the API, the broker and Redis{why} ...")
        _stop_children(children, stop)
        for server in reversed(servers):
            server.stop()
        console.say("pulse: stopped.")
    return 1 if stop.failed else 0


def _start_and_follow(
    users: int,
    rate: float,
    partitions: int,
    seed: int,
    stop: StopRequest,
    console: Console,
    servers: list[Server],
    children: list[_Child],
) -> None:
    RUN_DIR.mkdir(parents=True, exist_ok=True)
    # The broker starts empty, so the worker's local table data of a previous run is stale.
    shutil.rmtree(RUN_DIR / "worker", ignore_errors=True)
    state = load_state() or LocalState()
    console.say("pulse: starting Tansu and redis-server on 127.0.0.1 ...")
    stop.check()
    broker = _start_server(lambda port: start_tansu(port, log_dir=RUN_DIR), state.ports, "broker")
    servers.append(broker)
    stop.check()
    redis = _start_server(start_redis, state.ports, "redis")
    servers.append(redis)
    stop.check()
    origin = int(time.time() * 1000)
    metrics_port = pick_port(state.ports.get("metrics"))
    broker_url = f"kafka://127.0.0.1:{broker.port}"
    redis_url = f"redis://127.0.0.1:{redis.port}/0"
    env = {
        **os.environ,
        "PULSE_BROKER_URL": broker_url,
        "PULSE_PARTITIONS": str(partitions),
        "PULSE_CLOCK_ORIGIN_MS": str(origin),
        "PULSE_CLOCK_RATE": str(rate),
        "PULSE_SWEEP_INTERVAL_SECONDS": "1",
        "PULSE_METRICS_PORT": str(metrics_port),
        "PULSE_DATA_DIR": str(RUN_DIR / "worker"),
        "PULSE_REDIS_URL": redis_url,
    }
    settings = WorkerSettings(
        broker_url=broker_url,
        redis_url=redis_url,
        partitions=partitions,
        clock_origin_ms=origin,
        clock_rate=rate,
        metrics_port=metrics_port,
    )
    asyncio.run(ensure_topics(settings))
    stop.check()
    children.append(_spawn("worker", [sys.executable, "-m", "streams.cli", "worker"], env))
    api_port = pick_port(state.ports.get("api"))
    api_env = {
        **env,
        "PULSE_API_PORT": str(api_port),
        "PULSE_API_KEYS": f"{state.api_key}:read+ingest+admin",
    }
    api = _spawn("API", [sys.executable, "-m", "services"], api_env)
    children.append(api)

    def give_up() -> bool:
        console.check_reader()
        return stop.requested

    if not wait_port(api_port, api.proc, "the API", timeout=30, give_up=give_up):
        raise _Stopped(stop.reason)
    state.ports = {
        "broker": broker.port,
        "redis": redis.port,
        "api": api_port,
        "metrics": metrics_port,
    }
    state_path = save_state(state)
    _banner(console, settings, broker, redis, users, rate, origin, state, state_path)
    asyncio.run(_live(settings, origin, rate, users, seed, children, stop, console))


def _start_server(start: Callable[[int], Server], ports: dict[str, int], name: str) -> Server:
    """Start on the port of the last run when it is free, else (or if that fails) on a free
    one."""
    preferred = ports.get(name)
    port = pick_port(preferred)
    try:
        return start(port)
    except EmbeddedError:
        if port != preferred:
            raise
        return start(pick_port(None))


def _spawn(name: str, argv: list[str], env: dict[str, str]) -> _Child:
    log = RUN_DIR / f"{name.lower()}.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            argv, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
    return _Child(name, proc, log)


def _stop_children(children: list[_Child], stop: StopRequest) -> None:
    """SIGTERM every child's process group at once, wait for them (up to
    WORKER_STOP_SECONDS, less if another stop signal comes), then SIGKILL what is left."""
    for child in children:
        signal_group(child.proc, signal.SIGTERM)
    signals_before = stop.count
    deadline = time.monotonic() + WORKER_STOP_SECONDS
    while any(c.proc.poll() is None for c in children):
        if time.monotonic() > deadline or stop.count > signals_before:
            for child in children:
                signal_group(child.proc, signal.SIGKILL)
            for child in children:
                child.proc.wait()
            return
        time.sleep(0.05)


def _banner(
    console: Console,
    s: WorkerSettings,
    broker: Server,
    redis: Server,
    users: int,
    rate: float,
    origin: int,
    state: LocalState,
    state_path: Path,
) -> None:
    api_url = state.api_url
    key = state.api_key
    day_s = 86_400 / rate
    now = virtual_now(int(time.time() * 1000), origin, rate)
    pulse = _pulse_command()
    when = format_ts(now)[:16].replace("T", " ")
    console.say(
        f"""
  Pulse is running on the embedded stack (Ctrl-C stops everything).

  live view        {api_url}/            (sign in with the API key below)
  state API        {api_url}/docs        API key: {key}
                   curl -H 'X-API-Key: {key}' {api_url}/v1/stats
                   eval "$({pulse} env)"   sets API_URL and KEY (run it in this directory)
  send an event    {pulse} send --user u1 --type purchase --amount 150

  broker (Tansu)   kafka://127.0.0.1:{broker.port}
  Redis view       redis://127.0.0.1:{redis.port}/0   (keys pulse:user:<id>, pulse:seg:..., ...)
  worker metrics   http://127.0.0.1:{s.metrics_port}/metrics
  logs             {RUN_DIR}/worker.log, {RUN_DIR}/api.log
  input topic      {s.events_topic}      dead letters  {s.dlq_topic}
  output topics    {s.lifecycle_topic}, {s.warnings_topic}, {s.tiers_topic}, {s.rfm_topic}

  event time       {when} UTC now on the demo clock (not wall time): one virtual day
                   every {day_s:g} s; the worker, the API, the feed and `send` all use it

  The demo starts with {users} users (loyal, declining, churning, big spenders, newcomers);
  new users keep arriving and some come back, until you stop it. Expect tier upgrades at
  once, churn warnings within a minute, dormant users after a few minutes.

  Kept across restarts: the ports (when free) and the API key, in {state_path}.
  Reset on every start: everything else. The embedded broker and Redis are memory-only, so
  all topics, user state, the view and the demo (with a new clock) start from scratch.
"""
    )


def _pulse_command() -> str:
    """How to call `pulse` from here: the virtualenv's script, relative when it can be."""
    script = Path(sys.executable).parent / "pulse"
    if not script.exists() or shutil.which("pulse") == str(script):
        return "pulse"
    with contextlib.suppress(ValueError):
        return str(script.relative_to(Path.cwd()))
    return str(script)


async def _live(
    s: WorkerSettings,
    origin: int,
    rate: float,
    users: int,
    seed: int,
    children: list[_Child],
    stop: StopRequest,
    console: Console,
) -> None:
    done = asyncio.Event()
    demo = asyncio.create_task(
        run_demo(
            s.bootstrap,
            s.events_topic,
            origin_ms=origin,
            rate=rate,
            users=users,
            seed=seed,
            stop=done,
            endless=True,
        )
    )
    tasks = [demo, asyncio.create_task(_feed(s, origin, rate, done, console))]
    while not stop.requested:
        console.check_reader()
        for child in children:
            if child.proc.poll() is not None:
                console.say(
                    f"pulse: the {child.name} exited with code {child.proc.returncode}; "
                    f"see {child.log}"
                )
                stop.request(f"the {child.name} exited", failed=True)
        if demo.done() and not demo.cancelled() and demo.exception() is not None:
            console.say(f"pulse: the demo generator stopped: {demo.exception()!r}")
            stop.request("the demo generator failed", failed=True)
        await asyncio.sleep(0.2)
    done.set()
    for task in tasks:
        task.cancel()
    for task in tasks:
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await asyncio.wait_for(task, 5)


def describe(topic: str, doc: dict[str, Any], s: WorkerSettings) -> str | None:
    """One feed line for an output or dead-letter record (None: too common to show)."""
    if topic == s.dlq_topic:
        return f"dead letter    {doc.get('user_id') or '?':<16} {doc['reason']}: {doc['detail']}"
    when = format_ts(doc["event_time_ms"])[:16].replace("T", " ")
    user = doc["user_id"]
    if doc["kind"] == "churn_warning":
        holdout = " (holdout: not contacted)" if doc.get("group") == "holdout" else ""
        return (
            f"{when}  WARNING  {user:<16} {doc['reason']} risk={doc['risk_score']:.2f} "
            f"silent {doc['figures']['silence_days']:.1f}d{holdout}"
        )
    if doc["kind"] == "recall_reactivated":
        return (
            f"{when}  back     {user:<16} {doc['days_to_return']:.1f}d after the warning "
            f"({doc['group']}, {doc['from_stage']} -> {doc['to_stage']})"
        )
    if doc["kind"] == "tier_changed":
        if doc["direction"] == "initial" and doc["to_tier"] == "bronze":
            return None
        return (
            f"{when}  tier     {user:<16} {doc['from_tier'] or '-'} -> {doc['to_tier']} "
            f"({doc['direction']}, 90d spend {doc['figures']['spend_window']:.2f})"
        )
    if doc["from_stage"] is None:
        return None
    return f"{when}  stage    {user:<16} {doc['from_stage']} -> {doc['to_stage']} ({doc['reason']})"


async def _feed(
    s: WorkerSettings, origin: int, rate: float, stop: asyncio.Event, console: Console
) -> None:
    topics = [s.lifecycle_topic, s.warnings_topic, s.tiers_topic, s.dlq_topic]
    consumer = AIOKafkaConsumer(
        *topics, bootstrap_servers=s.bootstrap, group_id=None, auto_offset_reset="earliest"
    )
    await consumer.start()
    counts: Counter[str] = Counter()
    shown_dead = 0
    last_summary = time.monotonic()
    try:
        while not stop.is_set():
            batch = await consumer.getmany(timeout_ms=500)
            for tp, records in batch.items():
                for r in records:
                    doc = msgspec.json.decode(r.value)
                    counts[tp.topic] += 1
                    line = describe(tp.topic, doc, s)
                    if tp.topic == s.dlq_topic:
                        shown_dead += 1
                        if shown_dead == 8:
                            line = "dead letter    (further dead letters are only counted)"
                        elif shown_dead > 8:
                            line = None
                    if line:
                        console.say(line)
            if time.monotonic() - last_summary > 15:
                last_summary = time.monotonic()
                now = format_ts(virtual_now(int(time.time() * 1000), origin, rate))
                console.say(
                    f"-- event time {now[:16].replace('T', ' ')} UTC; so far: "
                    + ", ".join(f"{t} {counts[t]}" for t in topics)
                )
    finally:
        await consumer.stop()
