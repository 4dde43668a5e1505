"""The contenders and the one timing method they all get.

Each contender is a subprocess with its own consumer group on the same pre-loaded topic. The
clock starts at its first consumed record (its consumed-records counter, scraped from its
/metrics endpoint every 20 ms, first seen above zero; the start is the midpoint between that
scrape and the one before) and stops when the group's committed offsets reach the topic's end
on every partition (admin OffsetFetch every 25 ms). Faust flushes its changelog writes before
it commits offsets, so at that point every state change is on the changelog; the time includes
up to one commit interval (Faust: 2.8 s by default; the ceiling commits after every batch).
"""

from __future__ import annotations

import asyncio
import subprocess
import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from bench.measure import sample, scrape, total
from bench.supervisor import Supervisor
from bench.topics import GroupWatch
from streams.local.embedded import free_port

TIMING_METHOD = (
    "events/s = input records / (all offsets of the contender's group committed at the "
    "topic end - first record consumed); start: the contender's consumed-records counter "
    "first above 0 (scraped every 20 ms); end: admin OffsetFetch every 25 ms (Faust flushes "
    "changelog writes before committing, so the state is on the changelog; includes up to "
    "one commit interval, 2.8 s in Faust). CPU s: the contender process (user+system) over "
    "that interval; peak RSS: its VmHWM (a contender of several processes: their sums)."
)


@dataclass
class Throughput:
    """One contender's run over the input topic."""

    name: str
    input_records: int
    status: str = "not run"  # ok | capped | stalled | exited | no start | error
    committed: int = 0  # records committed when the clock stopped
    seconds: float | None = None  # first consumed -> all committed (or the cap)
    events_per_s: float | None = None
    consumed_all_after_s: float | None = None  # when the consumed counter reached the input
    cpu_seconds: float | None = None  # contender, over the timed interval
    cpu_total_seconds: float | None = None  # contender, from its start to the end
    cpu_us_per_event: float | None = None
    peak_rss_bytes: int | None = None
    rss_bytes: int | None = None
    broker_cpu_seconds: float | None = None  # the broker over the timed interval
    startup_seconds: float | None = None  # process start -> first record consumed
    note: str = ""
    log: str = ""
    round: int = 1  # python -m bench --rounds: which round this run belongs to

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class Running:
    """A started contender."""

    name: str
    proc: subprocess.Popen[bytes]
    metrics_port: int
    metric: str  # its consumed-records counter
    group: str
    started: float = field(default_factory=time.monotonic)
    # Other processes in the same consumer group, timed with this one as one contender.
    peers: list[Running] = field(default_factory=list)

    @property
    def members(self) -> list[Running]:
        return [self, *self.peers]


def start_ceiling(
    sup: Supervisor, bootstrap: str, topic: str, max_seconds: float, suffix: str = ""
) -> Running:
    port, group = free_port(), f"bench-ceiling{suffix}"
    argv = ["-m", "bench.ceiling", "--bootstrap", bootstrap, "--topic", topic]
    argv += ["--group", group, "--metrics-port", str(port), "--max-seconds", str(max_seconds)]
    proc = sup.spawn("ceiling", argv)
    return Running("ceiling", proc, port, "bench_events_consumed_total", group)


def start_naive(
    sup: Supervisor,
    bootstrap: str,
    topic: str,
    partitions: int,
    max_seconds: float,
    data_dir: Path,
    *,
    windowed: bool,
    suffix: str = "",
) -> Running:
    name = "naive-windowed" if windowed else "naive"
    port, app_id = free_port(), f"bench-{name}{suffix}"
    (data_dir / f"{name}{suffix}").mkdir(parents=True, exist_ok=True)
    argv = ["-m", "bench.naive", "--bootstrap", bootstrap, "--topic", topic]
    argv += ["--app-id", app_id, "--partitions", str(partitions), "--metrics-port", str(port)]
    argv += ["--datadir", str(data_dir / f"{name}{suffix}"), "--max-seconds", str(max_seconds)]
    if windowed:
        argv.append("--windowed")
    proc = sup.spawn(name, argv)
    return Running(name, proc, port, "bench_events_consumed_total", app_id)


async def consumed(run: Running) -> float | None:
    """The contender's consumed-records counter, summed over its processes (None while no
    endpoint is up)."""
    counts = []
    for member in run.members:
        try:
            counts.append(total(await scrape(member.metrics_port, timeout=2.0), run.metric))
        except (OSError, TimeoutError):
            pass
    return sum(counts) if counts else None


def _exited(run: Running) -> subprocess.Popen[bytes] | None:
    return next((m.proc for m in run.members if m.proc.poll() is not None), None)


def _cpu(pids: list[int]) -> float:
    return sum(sample(pid).cpu_seconds for pid in pids)


async def time_run(
    run: Running,
    *,
    sup: Supervisor,
    bootstrap: str,
    topic: str,
    ends: Mapping[int, int],
    broker_pid: int,
    cap_seconds: float,
    stall_seconds: float = 120,
    start_timeout: float = 120,
) -> Throughput:
    """Time `run` over `topic` (whose end offsets are `ends`) with the method above.

    Never raises for a contender's failure: the result's status says what happened (capped:
    the cap was reached, the rate is over the records committed by then).
    """
    n = sum(ends.values())
    res = Throughput(run.name, n)
    watch = GroupWatch(bootstrap, run.group, topic, sorted(ends))
    await watch.start()
    try:
        await _time(run, res, watch, ends, broker_pid, cap_seconds, stall_seconds, start_timeout)
    except Exception as exc:  # the harness goes on with the next contender
        res.status, res.note = "error", f"{type(exc).__name__}: {exc}"
    finally:
        await watch.close()
    if res.status not in ("ok", "capped"):
        res.log = sup.log_tail(run.proc)
    return res


async def _time(
    run: Running,
    res: Throughput,
    watch: GroupWatch,
    ends: Mapping[int, int],
    broker_pid: int,
    cap_seconds: float,
    stall_seconds: float,
    start_timeout: float,
) -> None:
    n = res.input_records
    pids = [m.proc.pid for m in run.members]
    # Start: the counter first above zero.
    prev_t = time.monotonic()
    deadline = prev_t + start_timeout
    while True:
        if (gone := _exited(run)) is not None:
            res.status, res.note = "exited", f"exit code {gone.returncode} before consuming"
            return
        count = await consumed(run)
        now = time.monotonic()
        if count is not None and count > 0:
            break
        if now > deadline:
            res.status, res.note = "no start", f"nothing consumed within {start_timeout:.0f}s"
            return
        prev_t = now
        await asyncio.sleep(0.02)
    t0 = (prev_t + now) / 2
    cpu0, broker0 = _cpu(pids), sample(broker_pid).cpu_seconds
    res.startup_seconds = t0 - run.started
    last_progress, last_committed = now, 0
    last_scrape = 0.0
    while True:
        committed = sum(min(v, ends[p]) for p, v in (await watch.committed()).items())
        now = time.monotonic()
        if committed >= n:
            res.status = "ok"
            break
        if committed > last_committed:
            last_committed, last_progress = committed, now
        if (gone := _exited(run)) is not None:
            res.status, res.note = "exited", f"exit code {gone.returncode}"
            break
        if now - t0 > cap_seconds:
            res.status = "capped"
            res.note = f"stopped at the {cap_seconds:.0f}s cap: {committed} of {n} committed"
            break
        if now - last_progress > stall_seconds:
            res.status = "stalled"
            res.note = f"no commit progress for {stall_seconds:.0f}s at {committed} of {n}"
            break
        if res.consumed_all_after_s is None and now - last_scrape > 0.25:
            last_scrape = now
            count = await consumed(run)
            if count is not None and count >= n:
                res.consumed_all_after_s = time.monotonic() - t0
        await asyncio.sleep(0.025)
    res.committed = committed
    res.seconds = now - t0
    if res.status in ("ok", "capped") and res.seconds > 0:
        res.events_per_s = committed / res.seconds
    try:
        samples = [sample(pid) for pid in pids]
    except OSError:
        return
    # A group's figures are its processes' sums.
    cpu = sum(s.cpu_seconds for s in samples)
    res.cpu_seconds = cpu - cpu0
    res.cpu_total_seconds = cpu
    res.peak_rss_bytes = sum(s.peak_rss_bytes for s in samples)
    res.rss_bytes = sum(s.rss_bytes for s in samples)
    res.broker_cpu_seconds = sample(broker_pid).cpu_seconds - broker0
    if committed:
        res.cpu_us_per_event = res.cpu_seconds / committed * 1e6
