"""The Redis view's cost per write, on both sides, and a digest of what it leaves in Redis.

    .venv/bin/python bench/view_speed.py                       # µs per write, 200k events
    .venv/bin/python bench/view_speed.py --events 50000 --users 5000 --coalesce 4 \\
        --callgrind .pulse/view-cg                             # instructions per write

1. Drives the pure core (bench.core_speed.Driver) over the benchmark's workload and collects,
   per batch of 500 events, the changed users' states and outputs as the worker hands them to
   `ViewWriter.put` (the changelog bytes, the outputs' published JSON, the state before);
   every `--coalesce` batches the pending users are one flush, as the writer's 50 ms interval
   coalesces them under load (the `pulse-view` phase of `python -m bench` writes about 2.9
   events per write; `--coalesce 15` gives 2.3, `--coalesce 4` 1.3).
2. Builds every flush's script arguments (`View.add_item` and msgpack): the worker's CPU per write.
3. Sends them through the script, in order, to a fresh redis-server: its CPU per write from
   /proc, or its instructions per write under callgrind (`--callgrind PREFIX`, deterministic
   on a shared machine; needs valgrind). `--redis-bin` runs another redis-server build (one
   with symbols, for `callgrind_annotate`).
4. Redelivers a few flushes (same versions, then stale ones) and prints a sha256 over the whole
   keyspace: a change of the script or of `View.add_item` must leave it unchanged.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import argparse  # noqa: E402
import asyncio  # noqa: E402
import gc  # noqa: E402
import hashlib  # noqa: E402
import os  # noqa: E402
import subprocess  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
import zlib  # noqa: E402
from typing import Any  # noqa: E402

import redis.asyncio as aioredis  # noqa: E402

from bench.core_speed import BATCH, PARTITIONS, POLICIES, Driver, Run, bench_workload  # noqa: E402
from streams.core.engine import Result  # noqa: E402
from streams.core.outputs import encode_output  # noqa: E402
from streams.core.state import UserState, encode_state  # noqa: E402
from streams.local.embedded import Server, free_port, redis_bin, start_redis, wait_port  # noqa: E402
from streams.view.keys import TRANSITIONS_KEPT, WARNINGS_KEPT_MS  # noqa: E402
from streams.view.writer import Pending, View, ViewWriter, output_item  # noqa: E402

TICK = os.sysconf("SC_CLK_TCK")
Flush = dict[str, Pending]


class Collecting(Driver):
    """The core's driver, handing each batch's changed users to a writer's pending map."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.published: dict[bytes, list[Any]] = {}
        self.changed: set[bytes] = set()
        self.last: dict[bytes, UserState] = {}
        self.flushes: list[Flush] = []
        self.writer = ViewWriter.__new__(ViewWriter)  # only its pending map and `put`
        self.writer.pending = {}

    def take(self, key: bytes, result: Result) -> None:
        for out in result.outputs:
            wire = encode_output(out, self.watermark).decode()
            self.published.setdefault(key, []).append(output_item(out, wire))
        if result.changed:
            self.changed.add(key)
        super().take(key, result)

    def commit(self) -> None:
        for key in sorted(self.working):
            state = self.working[key]
            if state is not None and key in self.changed:
                raw = encode_state(state)
                self.table[key] = raw
                before = self.last.get(key)
                ViewWriter.put(self.writer, state, self.published.pop(key, []), raw, before)
                self.last[key] = state
        self.working, self.published, self.changed = {}, {}, set()

    def flush(self) -> None:
        if self.writer.pending:
            self.flushes.append(self.writer.pending)
            self.writer.pending = {}


def collect(events: int, users: int, coalesce: int) -> list[Flush]:
    workload = bench_workload(events, users)
    driver = Collecting(POLICIES["default"], workload.now_ms, Run())
    placed = []
    for key, value in workload.records:
        partition = zlib.crc32(key) % PARTITIONS if key is not None else 0
        placed.append((key, value, partition, driver.offsets[partition]))
        driver.offsets[partition] += 1
    for n, start in enumerate(range(0, len(placed), BATCH)):
        batch = placed[start : start + BATCH]
        if n and n % 7 == 0:  # now and then the previous batch's tail again, as core_speed
            batch = placed[start - 25 : start] + batch
        for key, value, partition, offset in batch:
            driver.event(key, value, partition, offset)
        driver.tick(driver.watermark)
        driver.commit()
        if (n + 1) % coalesce == 0:
            driver.flush()
    driver.tick(workload.final_ms)
    driver.commit()
    driver.flush()
    return driver.flushes


def build(view: View, flushes: list[Flush]) -> tuple[list[list[bytes]], float]:
    """What View.write_many sends, per flush; and the CPU seconds it took."""
    t0 = time.process_time()
    packed = [view.pack(items) for items in flushes]
    return packed, time.process_time() - t0


def callgrind_redis(prefix: str, binary: str) -> Server:
    workdir = Path(tempfile.mkdtemp(prefix="pulse-redis-"))
    port = free_port()
    proc = subprocess.Popen(
        ["valgrind", "--tool=callgrind", f"--callgrind-out-file={prefix}.%p", binary]
        + ["--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
        + ["--dir", str(workdir)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    wait_port(port, proc, "redis-server", timeout=60)
    return Server("redis", port, proc, workdir=workdir)


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK


async def send(view: View, client: aioredis.Redis, packed: list[list[bytes]]) -> int:
    head = [view.prefix, TRANSITIONS_KEPT, WARNINGS_KEPT_MS]
    timeline = [view.timeline_bucket_ms, view.timeline_buckets]
    written = 0
    for chunks in packed:
        pipe = client.pipeline(transaction=False)
        for chunk in chunks:
            await view._batch(keys=[], args=[*head, chunk, *timeline], client=pipe)
        written += sum(int(n) for n in await pipe.execute())
    return written


async def digest(client: aioredis.Redis) -> str:
    h = hashlib.sha256()
    keys = sorted([k async for k in client.scan_iter(count=1000)])
    for key in keys:
        kind = (await client.type(key)).decode()
        h.update(key + b"\0" + kind.encode())
        value: Any
        if kind == "string":
            value = [await client.get(key)]
        elif kind == "hash":
            value = sorted((await client.hgetall(key)).items())
        elif kind == "list":
            value = await client.lrange(key, 0, -1)
        elif kind == "zset":
            value = await client.zrange(key, 0, -1, withscores=True)
        else:
            value = [kind]
        h.update(repr(value).encode())
    return f"{len(keys)} keys, sha256 {h.hexdigest()[:16]}"


def instructions(prefix: str, pid: int) -> int:
    dump = Path(f"{prefix}.{pid}")
    for line in sorted(dump.parent.glob(dump.name + "*"), key=os.path.getmtime)[-1].open():
        if line.startswith(("summary:", "totals:")):
            return int(line.split()[1])
    raise RuntimeError(f"no totals in {dump}*")


async def measure(args: argparse.Namespace, flushes: list[Flush]) -> None:
    writes = sum(len(f) for f in flushes)
    events_per_write = args.events / writes
    print(f"{len(flushes)} flushes, {writes} writes ({events_per_write:.2f} events per write)")
    binary = args.redis_bin or str(redis_bin())
    server = callgrind_redis(args.callgrind, binary) if args.callgrind else start_redis()
    client = aioredis.from_url(f"redis://127.0.0.1:{server.port}/0", socket_timeout=3600)
    try:
        view = View(client, "pulse")
        build(view, flushes)  # warms the caches a running worker has warm
        packed, build_s = build(view, flushes)
        await client.ping()
        if args.callgrind:
            zero = ["callgrind_control", "-z", str(server.proc.pid)]
            subprocess.run(zero, check=True, capture_output=True)
        cpu0 = cpu_seconds(server.proc.pid)
        written = await send(view, client, packed)
        redis_s = cpu_seconds(server.proc.pid) - cpu0
        if args.callgrind:
            dump = ["callgrind_control", "-d", str(server.proc.pid)]
            subprocess.run(dump, check=True, capture_output=True)
            ir = instructions(args.callgrind, server.proc.pid)
            print(f"redis-server: {ir / writes:,.0f} instructions per write (callgrind)")
        else:
            print(f"redis-server: {redis_s / writes * 1e6:.1f} µs CPU per write")
        print(f"worker: {build_s / writes * 1e6:.2f} µs CPU per write (View.add_item + msgpack)")
        print("commands inside the script, per write (Redis's commandstats):")
        stats = await client.info("commandstats")
        for name, st in sorted(stats.items(), key=lambda kv: -kv[1]["usec"]):
            if name in ("cmdstat_info", "cmdstat_ping", "cmdstat_script|load"):
                continue
            print(
                f"  {name.removeprefix('cmdstat_'):<16} {st['calls'] / writes:6.2f} calls, "
                f"{st['usec'] / writes:6.2f} µs ({st['usec_per_call']:.2f} µs per call)"
            )
        await send(view, client, packed[-3:])  # redelivered: the same versions
        await send(view, client, packed[len(packed) // 2 :][:1])  # stale versions
        print(f"{written} states written; keyspace: {await digest(client)}")
    finally:
        await client.aclose()
        server.stop()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--events", type=int, default=200_000)
    p.add_argument("--users", type=int, default=20_000)
    p.add_argument("--coalesce", type=int, default=15, help="batches of 500 events per flush")
    p.add_argument("--callgrind", metavar="PREFIX", help="run redis-server under callgrind")
    p.add_argument("--redis-bin", help="another redis-server binary")
    args = p.parse_args()
    t0 = time.time()
    flushes = collect(args.events, args.users, args.coalesce)
    print(f"collected in {time.time() - t0:.0f} s")
    gc.collect()
    gc.freeze()  # the collected states are not a worker's heap: keep them out of GC passes
    asyncio.run(measure(args, flushes))


if __name__ == "__main__":
    main()
