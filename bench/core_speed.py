"""Time the pure core per event, and fingerprint what it produced (the equivalence guard).

    .venv/bin/python bench/core_speed.py              # events/s and µs/event, 200k events
    .venv/bin/python bench/core_speed.py --digest     # sha256 of every output and state

The driver does per record what the live worker does (streams/worker/batch.py), without a broker:
`parse_event`, the user's state decoded once per batch, `apply_event`, `encode_output` for
every output, a tick per batch that sweeps the users due at the watermark, and the touched
states encoded at the end of the batch. Records go to one of four partitions by key, and now
and then the tail of the previous batch is read again (an at-least-once redelivery).

`--digest` runs several workloads (the benchmark's generator and the demo personas with
malformed and duplicate records) under several policies and prints one sha256 over every
outcome, output and encoded state, intermediate states included. An optimisation of the core
must leave it unchanged: run it on the original code (e.g. in a `git worktree`) and compare.
"""

from __future__ import annotations

import sys
from pathlib import Path

# Run as a script, only bench/ is on sys.path: put this checkout's root first, so that its
# `streams` and `bench` are the ones timed (a second worktree can time the original code).
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import argparse  # noqa: E402
import hashlib  # noqa: E402
import heapq  # noqa: E402
import time  # noqa: E402
import zlib  # noqa: E402
from collections import Counter  # noqa: E402
from collections.abc import Callable, Sequence  # noqa: E402
from dataclasses import dataclass, field  # noqa: E402
from typing import Any  # noqa: E402

from bench.workload import DAY_MS, HOUR_MS, Plan, WorkloadSpec  # noqa: E402
from streams.core.checkpoints import NEVER  # noqa: E402
from streams.core.contract import InvalidEvent, parse_event  # noqa: E402
from streams.core.engine import Result, apply_event, sweep  # noqa: E402
from streams.core.eventtime import parse_ts  # noqa: E402
from streams.core.outputs import encode_output  # noqa: E402
from streams.core.policy import ChurnModel, Policy  # noqa: E402
from streams.core.state import UserState, decode_state, encode_state  # noqa: E402
from streams.local.demo import build_schedule  # noqa: E402

Record = tuple[bytes | None, bytes]

PARTITIONS = 4
BATCH = 500
REDELIVER_EVERY = 7  # batches; the last REDELIVERED records of the batch before are read again
REDELIVERED = 25
MAX_BYTES = 65_536
# A fixed end of the benchmark's event times (2026-11-22T00:00:00Z), so runs are identical.
END_MS = 1_795_305_600_000
# The CDNOW BG/NBD parameters (Fader, Hardie & Lee 2005): a policy with a churn model.
CDNOW = ChurnModel(r=0.243, alpha=4.414, a=0.793, b=2.426)


@dataclass
class Workload:
    name: str
    records: list[Record]
    now_ms: int  # the wall clock parse_event bounds future timestamps by
    final_ms: int  # a last tick after the input: long silences play out


@dataclass
class Run:
    """What a run produced; `digest` only when asked for."""

    records: int = 0
    outputs: int = 0
    statuses: Counter[str] = field(default_factory=Counter)
    seconds: float = 0.0  # CPU time of this process, not wall time: the machine may be shared
    sweep_seconds: float = 0.0
    digest: hashlib._Hash | None = None

    def note(self, *parts: object) -> None:
        if self.digest is not None:
            self.digest.update("\x1f".join(map(str, parts)).encode() + b"\n")


class Driver:
    """The worker's per-record path over an in-memory table."""

    def __init__(self, policy: Policy, now_ms: int, run: Run) -> None:
        self.policy, self.now_ms, self.run = policy, now_ms, run
        self.skew_ms = int(policy.max_future_skew_seconds * 1000)
        self.table: dict[bytes, bytes] = {}
        self.due: list[tuple[int, bytes]] = []
        self.offsets = [0] * PARTITIONS
        self.watermark = 0
        self.working: dict[bytes, UserState | None] = {}

    def state(self, key: bytes) -> UserState | None:
        if key not in self.working:
            raw = self.table.get(key)
            self.working[key] = decode_state(raw) if raw is not None else None
        return self.working[key]

    def event(self, key: bytes | None, value: bytes, partition: int, offset: int) -> None:
        run = self.run
        run.records += 1
        try:
            ev = parse_event(
                value,
                key,
                now_ms=self.now_ms,
                min_ts_ms=self.policy.min_valid_ts_ms,
                max_future_skew_ms=self.skew_ms,
                max_bytes=MAX_BYTES,
            )
            ukey = ev.user_id.encode()
            result = apply_event(self.state(ukey), ev, self.policy, partition, offset)
        except InvalidEvent as exc:
            run.statuses[exc.reason] += 1
            run.note("dead", exc.reason, exc.detail, exc.user_id)
            return
        self.watermark = max(self.watermark, ev.ts)
        run.statuses[result.status] += 1
        run.note(result.status)
        self.take(ukey, result)

    def take(self, key: bytes, result: Result) -> None:
        for out in result.outputs:
            value = encode_output(out, self.watermark)
            self.run.outputs += 1
            if self.run.digest is not None:
                self.run.note("out", value.decode())
        if result.changed:
            old = self.working.get(key)
            self.working[key] = result.state
            if result.state.next_check < NEVER and (
                old is None or old.next_check != result.state.next_check
            ):
                heapq.heappush(self.due, (result.state.next_check, key))

    def tick(self, now: int) -> None:
        """Sweep every user whose checkpoint is due at `now`."""
        while self.due and self.due[0][0] <= now:
            due, key = heapq.heappop(self.due)
            state = self.state(key)
            if state is None or state.next_check != due:
                continue  # stale: the checkpoint moved
            result = sweep(state, now, self.policy)
            self.run.statuses[result.status] += 1
            self.take(key, result)

    def commit(self) -> None:
        """Write the batch's states back, encoded, as the worker does."""
        for key in sorted(self.working):
            state = self.working[key]
            if state is not None:
                raw = encode_state(state)
                self.table[key] = raw
                if self.run.digest is not None:
                    self.run.note("state", key.decode(), raw.hex())
        self.working = {}


def drive(workload: Workload, policy: Policy, digest: bool = False) -> Run:
    run = Run(digest=hashlib.sha256() if digest else None)
    driver = Driver(policy, workload.now_ms, run)
    placed: list[tuple[bytes | None, bytes, int, int]] = []
    for key, value in workload.records:
        partition = zlib.crc32(key) % PARTITIONS if key is not None else 0
        placed.append((key, value, partition, driver.offsets[partition]))
        driver.offsets[partition] += 1
    started = time.process_time()
    for n, start in enumerate(range(0, len(placed), BATCH)):
        batch = placed[start : start + BATCH]
        if n and n % REDELIVER_EVERY == 0:
            batch = placed[start - REDELIVERED : start] + batch
        for key, value, partition, offset in batch:
            driver.event(key, value, partition, offset)
        driver.tick(driver.watermark)
        driver.commit()
    middle = time.process_time()
    driver.tick(workload.final_ms)
    driver.commit()
    run.seconds = middle - started
    run.sweep_seconds = time.process_time() - middle
    for key in sorted(driver.table):
        run.note("final", key.decode(), driver.table[key].hex())
    return run


def _edge_cases(uid: str, ts: int) -> list[bytes]:
    """Records that exercise every rule of the input contract, valid and not."""
    head = f'"event_id":"x{ts}","user_id":"{uid}"'
    iso = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ts // 1000))
    docs = [
        f'{{{head},"type":"purchase","ts":"{iso}.5Z","amount":"12.345"}}',
        f'{{{head},"type":"purchase","ts":"{iso}+02:00","amount":7}}',
        f'{{{head},"type":"purchase","ts":{ts}.0,"amount":0.005,"properties":null}}',
        f'{{{head},"type":"purchase","ts":"{ts}","amount":null,"extra":[1,2]}}',
        f'{{{head},"type":"purchase","ts":{ts},"amount":"abc"}}',
        f'{{{head},"type":"purchase","ts":{ts},"amount":"NaN"}}',
        f'{{{head},"type":"purchase","ts":{ts},"amount":1e400}}',
        f'{{{head},"type":"purchase","ts":{ts},"amount":-1}}',
        f'{{{head},"type":"purchase","ts":{ts},"amount":1000000000.01}}',
        f'{{{head},"type":"purchase","ts":{ts},"amount":true}}',
        f'{{{head},"type":"purchase","ts":{ts},"amount":[1]}}',
        f'{{{head},"type":"page_view","ts":{ts}.5}}',
        f'{{{head},"type":"page_view","ts":1e999}}',
        f'{{{head},"type":"page_view","ts":"{iso}"}}',
        f'{{{head},"type":"page_view","ts":"yesterday"}}',
        f'{{{head},"type":"page_view","ts":true}}',
        f'{{{head},"type":"page_view","ts":null}}',
        f'{{{head},"type":"page_view","ts":{{}}}}',
        f'{{{head},"type":"page_view","ts":5}}',
        f'{{{head},"type":"page_view","ts":{ts + 400 * DAY_MS}}}',
        f'{{{head},"type":"page_view"}}',
        f'{{{head},"type":"Page View","ts":{ts}}}',
        f'{{{head},"type":"","ts":{ts}}}',
        f'{{{head},"type":7,"ts":{ts}}}',
        f'{{{head},"ts":{ts}}}',
        f'{{{head},"type":"page_view","ts":{ts},"properties":"x"}}',
        f'{{{head},"type":"page_view","ts":{ts},"properties":[]}}',
        f'{{"event_id":"y{ts}","user_id":"someone-else","type":"page_view","ts":{ts}}}',
        f'{{"event_id":"{"e" * 129}","user_id":"{uid}","type":"page_view","ts":{ts}}}',
        f'{{"event_id":null,"user_id":"{uid}","type":"page_view","ts":{ts}}}',
        f'{{"user_id":"{uid}","type":"page_view","ts":{ts}}}',
        f'{{"event_id":"z","user_id":"","type":"page_view","ts":{ts}}}',
        f'{{"event_id":"z","user_id":1.5,"type":"page_view","ts":{ts}}}',
        "[1, 2]",
        '"text"',
        '{"event_id": ',
        "[" * 2000 + "]" * 2000,
        f'{{{head},"type":"page_view","ts":{ts},"pad":"{"p" * MAX_BYTES}"}}',
    ]
    return [d.encode() for d in docs] + [b"\xff\xfe", b'{"a":"\xc3\x28"}']


def bench_workload(events: int, users: int) -> Workload:
    plan = Plan(WorkloadSpec(events=events, users=users, end_ms=END_MS))
    records: list[Record] = []
    for i, (key, value) in enumerate(plan.records()):
        if i % 1000 == 999:  # now and then a record without a key, as some producers send
            key = None
        records.append((key, value))
        if i % 1499 == 1498:  # and a record that breaks (or bends) the contract
            cases = _edge_cases(key.decode() if key else "u0000001", int(plan.ts[i]))
            records.append((key, cases[(i // 1499) % len(cases)]))
    return Workload(f"bench-{events // 1000}k", records, END_MS + HOUR_MS, END_MS + 70 * DAY_MS)


def demo_workload(users: int) -> Workload:
    schedule = build_schedule(users, 7, parse_ts("2026-01-01T00:00:00Z"))
    records: list[Record] = [(uid.encode(), value) for _, uid, value in schedule]
    last = max(at for at, _, _ in schedule)
    return Workload(f"demo-{users}", records, last + HOUR_MS, last + 70 * DAY_MS)


POLICIES: dict[str, Policy] = {
    "default": Policy(),
    "churn-model": Policy(churn_model=CDNOW),
    # As `pulse fit` chose for CDNOW: decided at 14 days of silence, a late look at 30.
    "late-look": Policy(
        churn_model=CDNOW.model_copy(
            update={
                "warn_probability": 0.71,
                "min_silence_days": 14,
                "max_silence_days": 14,
                "late_silence_days": 30,
                "late_warn_probability": 0.62,
            }
        )
    ),
    "odd": Policy(
        windows_days=(1, 7, 30, 60),
        tier_window_days=30,
        event_types=("page_view", "purchase", "custom", "signup"),
        passive_types=("points_earned", "custom"),
        spend_types=("purchase", "points_earned"),
        dedup_capacity=4,
        allowed_lateness_hours=1,
        min_gaps_for_typical=1,
        drop_min_active_days_30d=3,
        holdout_fraction=0.5,
        churn_model=CDNOW,
    ),
}


def digest_all(events: int, users: int, demo_users: int) -> str:
    total = hashlib.sha256()
    workloads = [bench_workload(events, users), demo_workload(demo_users)]
    for workload in workloads:
        for name, policy in POLICIES.items():
            run = drive(workload, policy, digest=True)
            assert run.digest is not None
            part = run.digest.hexdigest()
            total.update(part.encode())
            print(f"{workload.name:>10} {name:>12}: {run.records} records, {run.outputs} outputs")
            print(f"{'':>10} {'':>12}  {dict(sorted(run.statuses.items()))}")
            print(f"{'':>10} {'':>12}  {part}")
    return total.hexdigest()


CORE = ("parse_event", "apply_event", "sweep", "encode_output", "decode_state", "encode_state")


def time_core_calls() -> Counter[str]:
    """Wrap the core functions this module calls so that each call's wall time is summed
    per function (the wrappers add their own cost, so the totals are a breakdown, not the
    figure to compare)."""
    totals: Counter[str] = Counter()
    space = globals()

    def timed(name: str, fn: Callable[..., Any]) -> Callable[..., Any]:
        def call(*args: Any, **kwargs: Any) -> Any:
            started = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                totals[name] += time.perf_counter() - started

        return call

    for name in CORE:
        space[name] = timed(name, space[name])
    return totals


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=200_000)
    parser.add_argument("--users", type=int, default=20_000)
    parser.add_argument("--repeat", type=int, default=3, help="timed runs; the best is shown")
    parser.add_argument("--policy", choices=sorted(POLICIES), default="default")
    parser.add_argument("--digest", action="store_true", help="print the equivalence digest")
    parser.add_argument("--demo-users", type=int, default=320)
    parser.add_argument(
        "--breakdown", action="store_true", help="one more run, timing each core function"
    )
    args = parser.parse_args(argv)
    if args.digest:
        digest = digest_all(args.events, args.users, args.demo_users)
        print(f"digest {digest}")
        return
    workload = bench_workload(args.events, args.users)
    policy = POLICIES[args.policy]
    runs = [drive(workload, policy) for _ in range(args.repeat)]
    best = min(runs, key=lambda r: r.seconds)
    sweep_best = min(r.sweep_seconds for r in runs)
    print(
        f"{workload.name}, policy {args.policy}: {best.records} records, {best.outputs} outputs"
        f" (best of {args.repeat})"
    )
    print(
        f"parse+apply+encode: {best.records / best.seconds:,.0f} events/s,"
        f" {best.seconds / best.records * 1e6:.1f} µs/event ({best.seconds:.2f} s CPU)"
    )
    print(f"final sweep of every user: {sweep_best:.2f} s CPU")
    if args.breakdown:
        totals = time_core_calls()
        run = drive(workload, policy)
        for name in CORE:
            print(f"  {name:>14}: {totals[name] / run.records * 1e6:5.1f} µs/event")
        rest = run.seconds + run.sweep_seconds - sum(totals.values())
        print(f"  {'the driver':>14}: {rest / run.records * 1e6:5.1f} µs/event (and the timers)")


if __name__ == "__main__":
    main()
