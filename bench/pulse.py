"""Contender 3, the real `pulse worker`, and the measurements only Pulse gets: latency at a fixed
offered load, state bytes and RSS per user, recovery after kill -9, and the CPU of one sweep.

The worker runs exactly as deployed (`python -m streams.cli worker`, settings from PULSE_*
variables, the built-in production policy unless --policy is given), with the Redis view off
(PULSE_REDIS_URL="") except in the pulse-view phase, the tick timer off
(PULSE_SWEEP_INTERVAL_SECONDS=0: the benchmark sends the ticks itself) and its Prometheus
endpoint on a loopback port.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import msgspec
import numpy as np
from aiokafka import AIOKafkaConsumer, TopicPartition

from bench.contenders import Running
from bench.measure import (
    bucket_bounds,
    bucket_delta,
    buckets,
    percentile,
    quantile,
    sample,
    scrape,
    total,
)
from bench.supervisor import Supervisor
from bench.topics import GroupWatch, create_topics, highwaters, new_producer, scan_latest
from bench.workload import DAY_MS, Plan, live_event
from streams.core.state import decode_state
from streams.local.embedded import free_port
from streams.worker.ticks import encode_tick

CONSUMED_METRIC = "pulse_events_consumed_total"
LATENCY_HISTOGRAM = "pulse_consume_to_emit_seconds"
READY_LINE = "Worker ready"
# The worker kept up with the offered load if it had consumed everything this soon after the
# last send; otherwise records queued in the topic and the histogram does not show their wait.
KEPT_UP_SECONDS = 1.0
# Faust's recovery log lines: after the group join, and after reading the changelog.
RECOVERY_LINES = {
    "restore_started_s": "Restoring state from changelog topics",
    "restore_done_s": "Done reading from changelog topics",
}


@dataclass
class PulseWorker:
    """The PULSE_* environment of one Pulse app (its topics, group and changelog)."""

    sup: Supervisor
    bootstrap: str
    app_id: str
    events_topic: str
    partitions: int
    data_dir: Path
    policy_file: str | None = None
    store: str = "memory://"
    runs: int = 0
    redis_url: str = ""  # empty: the Redis view off

    @property
    def ticks_topic(self) -> str:
        return f"{self.app_id}-ticks"

    @property
    def changelog(self) -> str:
        return f"{self.app_id}-user-state-changelog"

    def topics(self) -> list[str]:
        suffixes = (
            "ticks",
            "dlq",
            "lifecycle-changes",
            "churn-warnings",
            "tier-changes",
            "rfm-segments",
        )
        return [self.events_topic, *(f"{self.app_id}-{s}" for s in suffixes)]

    async def create_topics(self) -> None:
        await create_topics(self.bootstrap, self.topics(), self.partitions)

    def env(self, metrics_port: int) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("PULSE_")}
        a = self.app_id
        env.update(
            {
                "PULSE_BROKER_URL": f"kafka://{self.bootstrap}",
                "PULSE_APP_ID": a,
                "PULSE_EVENTS_TOPIC": self.events_topic,
                "PULSE_TICKS_TOPIC": f"{a}-ticks",
                "PULSE_DLQ_TOPIC": f"{a}-dlq",
                "PULSE_LIFECYCLE_TOPIC": f"{a}-lifecycle-changes",
                "PULSE_WARNINGS_TOPIC": f"{a}-churn-warnings",
                "PULSE_TIERS_TOPIC": f"{a}-tier-changes",
                "PULSE_RFM_TOPIC": f"{a}-rfm-segments",
                "PULSE_PARTITIONS": str(self.partitions),
                "PULSE_METRICS_PORT": str(metrics_port),
                "PULSE_DATA_DIR": str(self.data_dir / a),
                "PULSE_SWEEP_INTERVAL_SECONDS": "0",
                "PULSE_REDIS_URL": self.redis_url,
                "PULSE_VIEW_PREFIX": a,
                "PULSE_LOG_LEVEL": "info",
                "PULSE_STORE": self.store,
            }
        )
        if self.policy_file:
            env["PULSE_POLICY_FILE"] = str(Path(self.policy_file).resolve())
        return env

    def start(self, name: str = "pulse") -> Running:
        port = free_port()
        self.runs += 1
        (self.data_dir / self.app_id).mkdir(parents=True, exist_ok=True)
        proc = self.sup.spawn(
            f"{self.app_id}-{self.runs}",
            ["-m", "streams.cli", "worker"],
            env=self.env(port),
        )
        return Running(name, proc, port, CONSUMED_METRIC, self.app_id)


async def wait_log_line(
    sup: Supervisor, run: Running, text: str, timeout: float, after: int = 0
) -> tuple[float, int]:
    """Wait for `text` in the worker's log past byte `after`; returns (monotonic time, end)."""
    path = sup.log_of(run.proc)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        data = path.read_bytes()
        i = data.find(text.encode(), after)
        if i >= 0:
            return time.monotonic(), i + len(text)
        if run.proc.poll() is not None:
            raise RuntimeError(f"the worker exited ({run.proc.returncode}) before '{text}'")
        await asyncio.sleep(0.1)
    raise TimeoutError(f"no '{text}' in the worker log within {timeout:.0f}s")


async def idle_rss(worker: PulseWorker, settle: float = 3.0) -> dict[str, Any]:
    """RSS of a worker with an empty table (its own empty topics), after it is ready."""
    await worker.create_topics()
    run = worker.start()
    try:
        await wait_log_line(worker.sup, run, READY_LINE, timeout=120)
        await asyncio.sleep(settle)
        s = sample(run.proc.pid)
        return {"rss_bytes": s.rss_bytes, "peak_rss_bytes": s.peak_rss_bytes}
    finally:
        worker.sup.stop(run.proc)


@dataclass
class StateSizes:
    users: int
    changelog_records: int
    mean_bytes: float
    p50_bytes: float | None
    p99_bytes: float | None
    max_bytes: int
    scan_seconds: float
    # per partition: (key, total_events) of one user, for recovery probes
    probes: dict[int, tuple[bytes, int]] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {
            "users": self.users,
            "changelog_records": self.changelog_records,
            "mean_bytes": round(self.mean_bytes, 1),
            "p50_bytes": self.p50_bytes,
            "p99_bytes": self.p99_bytes,
            "max_bytes": self.max_bytes,
            "changelog_scan_seconds": round(self.scan_seconds, 2),
        }


async def state_sizes(bootstrap: str, changelog: str) -> StateSizes:
    """Latest serialized state per user on the changelog (what a restore reads per key)."""
    scan = await scan_latest(bootstrap, changelog)
    sizes = sorted(len(v) for v in scan.latest.values())
    probes: dict[int, tuple[bytes, int]] = {}
    for key, value in scan.latest.items():
        state = decode_state(value)
        if state.partition not in probes and state.partition >= 0:
            probes[state.partition] = (key, state.total_events)
    n = len(sizes)
    return StateSizes(
        users=n,
        changelog_records=scan.records,
        mean_bytes=sum(sizes) / n if n else 0.0,
        p50_bytes=percentile([float(s) for s in sizes], 0.50),
        p99_bytes=percentile([float(s) for s in sizes], 0.99),
        max_bytes=sizes[-1] if sizes else 0,
        scan_seconds=scan.seconds,
        probes=probes,
    )


class ChangelogTail:
    """Follows a changelog from given offsets; notes (key, partition, last_offset, seen at)."""

    def __init__(self, bootstrap: str, topic: str, start: dict[int, int]) -> None:
        self.consumer = AIOKafkaConsumer(
            bootstrap_servers=bootstrap,
            group_id=None,
            enable_auto_commit=False,
            fetch_max_wait_ms=5,
        )
        self.topic = topic
        self.start_offsets = start
        self.seen: list[tuple[bytes, int, int, int, float]] = []
        self.task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        await self.consumer.start()
        tps = [TopicPartition(self.topic, p) for p in sorted(self.start_offsets)]
        self.consumer.assign(tps)
        for tp in tps:
            self.consumer.seek(tp, self.start_offsets[tp.partition])
        self.task = asyncio.create_task(self._run())

    async def _run(self) -> None:
        while True:
            batch = await self.consumer.getmany(timeout_ms=100)
            now = time.monotonic()
            for msgs in batch.values():
                for m in msgs:
                    if m.value is None or m.key is None:
                        continue
                    state = decode_state(m.value)
                    self.seen.append(
                        (m.key, state.partition, state.last_offset, state.total_events, now)
                    )

    async def stop(self) -> None:
        if self.task is not None:
            self.task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self.task
        await self.consumer.stop()


async def offered_load(
    worker: PulseWorker,
    run: Running,
    plan: Plan,
    input_ends: dict[int, int],
    *,
    rate: float,
    seconds: float,
    drain_timeout: float,
    seed: int,
) -> dict[str, Any]:
    """Send `rate` events/s for `seconds` (existing users, event time now) and measure.

    consume-to-emit: the worker's own histogram (records whose batch produced outputs), p50/p99
    interpolated inside the buckets. produce-to-changelog: from our send to the state that
    includes the event becoming readable on the changelog (matched by the state's source
    partition and offset), as a consumer on the changelog sees it.
    """
    bootstrap = worker.bootstrap
    tail = ChangelogTail(bootstrap, worker.changelog, await highwaters(bootstrap, worker.changelog))
    await tail.start()
    before = await scrape(run.metrics_port)
    producer = new_producer(bootstrap, linger_ms=0)
    await producer.start()
    n = int(rate * seconds)
    rng = np.random.default_rng(seed + 1)
    pick = plan.users[rng.integers(0, len(plan), size=n)].tolist()
    sent: list[tuple[bytes, float, asyncio.Future[Any]]] = []
    try:
        t_start = time.monotonic()
        i = 0
        while i < n:
            due = min(n, int((time.monotonic() - t_start) * rate) + 1)
            now_ms = int(time.time() * 1000)
            while i < due:
                key, value = live_event(f"lat-{seed}-{i}", pick[i], now_ms, i, plan)
                t = time.monotonic()
                sent.append((key, t, await producer.send(worker.events_topic, value, key=key)))
                i += 1
            await asyncio.sleep(0.002)
        offered_seconds = time.monotonic() - t_start
        metas = await asyncio.gather(*(f for _, _, f in sent))
    finally:
        await producer.stop()
    ends = dict(input_ends)
    for m in metas:
        ends[m.partition] = max(ends.get(m.partition, 0), m.offset + 1)
    # Drain: the worker has consumed (counter) and committed (group offsets) all we sent.
    consumed0, t_last = total(before, CONSUMED_METRIC), t_start + offered_seconds
    caught_up: float | None = None
    drained: float | None = None
    watch = GroupWatch(bootstrap, run.group, worker.events_topic, sorted(ends))
    await watch.start()
    try:
        deadline, next_commit_check = time.monotonic() + drain_timeout, 0.0
        while drained is None and time.monotonic() < deadline:
            if caught_up is None:
                try:
                    count = total(await scrape(run.metrics_port), CONSUMED_METRIC)
                except (OSError, TimeoutError):
                    count = 0.0
                if count >= consumed0 + n:
                    caught_up = time.monotonic() - t_last
            if time.monotonic() >= next_commit_check:
                committed = await watch.committed()
                if all(committed.get(p, 0) >= e for p, e in ends.items()):
                    drained = time.monotonic() - t_last
                next_commit_check = time.monotonic() + 0.2
            await asyncio.sleep(0.05)
    finally:
        await watch.close()
    await asyncio.sleep(1.0)  # the tail reads the last changelog writes
    after = await scrape(run.metrics_port)
    await tail.stop()
    # produce -> changelog: per key, pending events in offset order, matched by observations.
    pending: dict[bytes, list[tuple[int, int, float]]] = defaultdict(list)
    for (key, t, _), m in zip(sent, metas, strict=True):
        pending[key].append((m.partition, m.offset, t))
    latencies: list[float] = []
    for key, part, last_offset, _, seen_at in tail.seen:
        waiting = pending.get(key)
        if not waiting:
            continue
        keep = []
        for p, off, t in waiting:
            if p == part and off <= last_offset:
                latencies.append(max(0.0, seen_at - t))
            else:
                keep.append((p, off, t))
        pending[key] = keep
    latencies.sort()
    unseen = sum(len(v) for v in pending.values())
    hist = bucket_delta(buckets(before, LATENCY_HISTOGRAM), buckets(after, LATENCY_HISTOGRAM))
    return {
        "offered_rate": rate,
        "achieved_rate": round(n / offered_seconds, 1),
        "offered_seconds": round(offered_seconds, 2),
        "events": n,
        # after the last send: all of it counted as consumed / all of it committed
        "caught_up_after_s": None if caught_up is None else round(caught_up, 2),
        "drained_after_s": None if drained is None else round(drained, 2),
        "kept_up": caught_up is not None and caught_up <= KEPT_UP_SECONDS,
        "drain_timeout_s": drain_timeout,
        "consume_to_emit": {
            "observations": hist[-1][1] if hist else 0,
            "p50_s": quantile(hist, 0.50),
            "p99_s": quantile(hist, 0.99),
            "p99_bucket_s": bucket_bounds(hist, 0.99),
            "note": "worker histogram; observes only records whose batch produced outputs",
        },
        "produce_to_changelog": {
            "matched": len(latencies),
            "unseen": unseen,
            "p50_s": percentile(latencies, 0.50),
            "p99_s": percentile(latencies, 0.99),
            "max_s": latencies[-1] if latencies else None,
        },
    }


def rss_per_user(rss: int, idle: int, users: int) -> float:
    return (rss - idle) / users if users else 0.0


async def recovery(
    worker: PulseWorker,
    old: Running,
    sizes: StateSizes,
    *,
    timeout: float,
) -> tuple[dict[str, Any], Running]:
    """kill -9 the worker, start a new one at once, time until its table is back.

    `ready_s`: kill -> the last "Worker ready" log line before the probes were applied.
    `probes_s`: kill -> one probe event per partition (sent right after the kill, for a known
    user) applied on top of the recovered state and visible on the changelog, i.e. the
    worker is recovered and processing. `complete`: every probe saw the user's recovered
    state (total_events one more than before), and the worker's stage gauges count every user.
    """
    sup, bootstrap = worker.sup, worker.bootstrap
    marks = await highwaters(bootstrap, worker.changelog)
    killed = sup.kill9(old.proc)
    run = worker.start()
    lines: dict[str, list[float]] = {text: [] for text in (READY_LINE, *RECOVERY_LINES.values())}
    watcher = asyncio.create_task(watch_log(sup, run, lines))
    tail = ChangelogTail(bootstrap, worker.changelog, marks)
    await tail.start()
    producer = new_producer(bootstrap, linger_ms=0)
    await producer.start()
    probe_keys: dict[bytes, int] = {}
    try:
        now_ms = int(time.time() * 1000)
        for i, (key, events_before) in enumerate(sorted(sizes.probes.values())):
            doc = {
                "event_id": f"probe-{now_ms}-{i}",
                "user_id": key.decode(),
                "type": "page_view",
                "ts": now_ms,
            }
            await producer.send_and_wait(worker.events_topic, msgspec.json.encode(doc), key=key)
            probe_keys[key] = events_before
    finally:
        await producer.stop()
    result: dict[str, Any] = {"probes": len(probe_keys), "timeout_s": timeout}
    probes_at: float | None = None
    try:
        deadline = killed + timeout
        applied: dict[bytes, int] = {}
        while time.monotonic() < deadline:
            for key, _, _, events, seen_at in tail.seen:
                if key in probe_keys and key not in applied:
                    applied[key] = events
                    probes_at = seen_at
            if len(applied) == len(probe_keys):
                break
            if run.proc.poll() is not None:
                result["error"] = f"the new worker exited with {run.proc.returncode}"
                break
            await asyncio.sleep(0.1)
        result["probes_applied"] = len(applied)
        result["probes_recovered_state"] = sum(
            1 for k, ev in applied.items() if ev == probe_keys[k] + 1
        )
        if probes_at is not None and len(applied) == len(probe_keys):
            result["probes_s"] = round(probes_at - killed, 2)
        else:
            result["note"] = f"probes not all applied within {timeout:.0f}s"
    finally:
        await tail.stop()
        # The worker may log 'Worker ready' a moment before the probes show: one more poll.
        await asyncio.sleep(0.2)
        watcher.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await watcher
    ready = [t for t in lines[READY_LINE] if probes_at is None or t <= probes_at + 0.2]
    result["ready_s"] = round(ready[-1] - killed, 2) if ready else None
    result["ready_lines"] = len(lines[READY_LINE])
    for step, text in RECOVERY_LINES.items():  # Faust's own recovery steps, last occurrence
        times = [t for t in lines[text] if probes_at is None or t <= probes_at + 0.2]
        result[step] = round(times[-1] - killed, 2) if times else None
    # The stage gauges count the users of the worker's partitions (refreshed every 15 s).
    result["users_expected"] = sizes.users
    result["users_in_gauges"] = await _gauge_users(run, sizes.users, timeout=35)
    result["complete"] = (
        result.get("probes_recovered_state") == len(probe_keys)
        and result["users_in_gauges"] == sizes.users
    )
    return result, run


async def watch_log(sup: Supervisor, run: Running, seen: dict[str, list[float]]) -> None:
    """Note in `seen[text]` the monotonic time at which each occurrence of `text` shows up in
    the worker's log (polled every 50 ms)."""
    offsets = dict.fromkeys(seen, 0)
    path = sup.log_of(run.proc)
    while True:
        data = path.read_bytes()
        for text, times in seen.items():
            needle = text.encode()
            while (i := data.find(needle, offsets[text])) >= 0:
                times.append(time.monotonic())
                offsets[text] = i + len(needle)
        await asyncio.sleep(0.05)


async def _gauge_users(run: Running, expected: int, timeout: float) -> int | None:
    """Users counted by the worker's stage gauges, once they equal `expected` (or the last
    count seen at the timeout; None when the worker exports no such gauge)."""
    deadline = time.monotonic() + timeout
    got: int | None = None
    while time.monotonic() < deadline:
        try:
            m = await scrape(run.metrics_port)
        except (OSError, TimeoutError):
            m = {}
        if any(k.startswith("pulse_users_by_stage{") for k in m):
            got = int(total(m, "pulse_users_by_stage"))
            if got == expected:
                return got
        await asyncio.sleep(0.5)
    return got


async def idle_cpu(run: Running, seconds: float) -> float:
    """CPU seconds per second of wall time the worker burns with nothing to do."""
    c0, t0 = sample(run.proc.pid).cpu_seconds, time.monotonic()
    await asyncio.sleep(seconds)
    return (sample(run.proc.pid).cpu_seconds - c0) / (time.monotonic() - t0)


async def sweep_cost(
    worker: PulseWorker, run: Running, now_ms: int, *, label: str, timeout: float
) -> dict[str, Any]:
    """Send one tick per partition (event time `now_ms`) and measure the worker's CPU until
    it has applied them all (pulse_sweeps_total up by the partition count) and gone idle."""
    pid, parts = run.proc.pid, worker.partitions
    m0 = await scrape(run.metrics_port)
    sweeps0, swept0 = total(m0, "pulse_sweeps_total"), total(m0, "pulse_swept_users_total")
    cpu0 = sample(pid).cpu_seconds
    t0 = time.monotonic()
    producer = new_producer(worker.bootstrap, linger_ms=0)
    await producer.start()
    try:
        for p in range(parts):
            await producer.send_and_wait(
                worker.ticks_topic, encode_tick(now_ms), key=b"tick", partition=p
            )
    finally:
        await producer.stop()
    res: dict[str, Any] = {"label": label, "tick_ms": now_ms}
    applied_at: float | None = None
    last_cpu, last_t = cpu0, t0
    while True:
        await asyncio.sleep(0.1)
        m = await scrape(run.metrics_port)
        cpu, t = sample(pid).cpu_seconds, time.monotonic()
        swept = total(m, "pulse_swept_users_total") - swept0
        if applied_at is None and total(m, "pulse_sweeps_total") - sweeps0 >= parts:
            applied_at = t
        # Done: all ticks applied and the process idle (< 10% of a core over the last poll).
        if applied_at is not None and (cpu - last_cpu) < 0.1 * (t - last_t):
            res.update(status="ok", cpu_seconds=round(last_cpu - cpu0, 3))
            break
        if t - t0 > timeout:
            res.update(
                status="capped",
                cpu_seconds=round(cpu - cpu0, 3),
                note=f"not done within {timeout:.0f}s",
            )
            break
        last_cpu, last_t = cpu, t
    res["wall_seconds"] = round(last_t - t0, 3)
    res["users_swept"] = int(swept)
    if swept:
        res["cpu_us_per_swept_user"] = round(res["cpu_seconds"] / swept * 1e6, 1)
    return res


def next_midnight(ts_ms: int) -> int:
    return (ts_ms // DAY_MS + 1) * DAY_MS
