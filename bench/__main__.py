"""`python -m bench`: the whole benchmark in one run (issue 5). Prints a table, writes JSON.

One embedded Tansu broker; the input topic is generated deterministically and loaded once;
then every contender reads it with its own consumer group, one after the other, and again
in every further round (--rounds, default 2), each round in the reverse order of the one
before:

1. ceiling: raw aiokafka consumer + JSON decode (bench/ceiling.py)
2. naive Faust, and naive Faust with hopping windowed tables (bench/naive.py); the same
   naive job in the Python peers, each in its own idiom with its own state and changelog or
   recovery: Quix Streams (bench/quix_app.py) and Bytewax (bench/bytewax_flow.py), run by
   --peer-python and skipped with a message when it lacks their packages (bench/peers.py)
3. the Pulse worker (`python -m streams.cli worker`): throughput, state bytes and RSS per
   user; then (phase pulse-group) --group-workers Pulse workers in one consumer group on this
   machine, throughput only: how far scaling out by processes goes here; (phase pulse-view)
   one worker with the Redis view on; and once every throughput phase is done, the latency
   step: the `pulse` worker started again on its table, a paced producer at --rate events/s.
   It appends to the input topic, so it must come after every contender that reads it, or
   they would process its records too, partly inside their clocks and partly after;
4. the scale phase: a second topic with --scale-users users loaded into a fresh Pulse worker:
   RSS and state per user, recovery after kill -9, idle CPU, and the CPU of single sweeps.

Every process is stopped at the end, also on failure, Ctrl-C or SIGTERM. Logs are kept in
.pulse/bench/<time>/. The worker and the harness use the `streams` package of the current
directory: to measure another checkout (e.g. a `git worktree` of an older commit), run
`/path/to/.venv/bin/python -m bench` from that checkout.

A full run (1M events, 1M scale users) takes about an hour on two cores with its two rounds
(~35 minutes with --rounds 1), mostly the naive windowed contender and loading the scale
users; --quick takes several minutes.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import signal
import statistics
import sys
import time
import traceback
from pathlib import Path
from typing import Any

from bench import pulse as pulse_phase
from bench.contenders import (
    TIMING_METHOD,
    Running,
    Throughput,
    start_ceiling,
    start_naive,
    time_run,
)
from bench.measure import sample, scrape, total
from bench.peers import INPUT_TOPIC_CONFIGS, PEERS, missing, start_peer
from bench.report import evaluate, render
from bench.supervisor import Supervisor
from bench.topics import Loaded, create_topics, highwaters, load
from bench.workload import Plan, WorkloadSpec, default_end_ms
from streams.local.embedded import Server, start_redis, start_tansu

EXAMPLES = """examples:
  python -m bench --quick          # 100k events: a few minutes
  python -m bench                  # 1M events, 1M scale users, two rounds: about an hour
  python -m bench --only ceiling,pulse --events 200000 --users 20000
  # the Python peers beside Pulse, from a venv made with bench/requirements-peers.txt:
  python -m bench --only naive,quix,bytewax,pulse,pulse-view --events 200000 --users 20000 \\
      --peer-python /tmp/benchvenv/bin/python
  make bench BENCH_ARGS=--quick
"""
CONTENDERS = (
    "ceiling",
    "naive",
    "windowed",
    "quix",
    "bytewax",
    "pulse",
    "pulse-group",
    "pulse-view",
)
PHASES = (*CONTENDERS, "scale")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python -m bench",
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=EXAMPLES,
    )
    p.add_argument("--events", type=int, default=1_000_000, help="input events (1M)")
    p.add_argument("--users", type=int, default=100_000, help="users in the input (100k)")
    p.add_argument("--partitions", type=int, default=8)
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--scale-users", type=int, default=1_000_000, help="users for the scale phase")
    p.add_argument(
        "--scale-events", type=int, default=None, help="events for the scale phase (2 per user)"
    )
    p.add_argument("--rate", type=float, default=5000, help="offered load, events/s (5000)")
    p.add_argument("--latency-seconds", type=float, default=20, help="offered-load duration")
    p.add_argument(
        "--cap",
        type=float,
        default=1800,
        help="stop a contender after this many seconds and rate what it committed (1800)",
    )
    p.add_argument(
        "--scale-cap",
        type=float,
        default=3600,
        help="seconds the worker may take to load the scale users (3600)",
    )
    p.add_argument("--sweep-timeout", type=float, default=600, help="per sweep, seconds (600)")
    p.add_argument("--recovery-timeout", type=float, default=600, help="seconds (600)")
    p.add_argument(
        "--only",
        default=",".join(PHASES),
        help=f"comma-separated phases to run, in the order given, of {','.join(PHASES)}"
        " (default: all; scale runs last)",
    )
    p.add_argument(
        "--rounds",
        type=int,
        default=2,
        help="times every contender phase runs, in the order given, then reversed, and so on;"
        " the ratios are the medians over rounds of each round's ratio (2)",
    )
    p.add_argument(
        "--group-workers",
        type=int,
        default=2,
        help="Pulse workers in the pulse-group phase's consumer group (2)",
    )
    p.add_argument(
        "--peer-python",
        default=sys.executable,
        help="the interpreter that runs the quix and bytewax contenders, with the packages of "
        "bench/requirements-peers.txt (default: this one; without them they are skipped)",
    )
    p.add_argument("--policy", default=None, help="Pulse policy file (default: built-in)")
    p.add_argument(
        "--store",
        default="memory://",
        help="the Pulse workers' table store: memory:// (recovery replays the whole changelog) "
        "or rocksdb:// (the production setting: a restart on the same disk reads only the "
        "changelog tail)",
    )
    p.add_argument("--out", type=Path, default=Path("bench/results/latest.json"))
    p.add_argument(
        "--quick",
        action="store_true",
        help="100k events, 10k users, 50k scale users, 10 s offered load, 300 s cap",
    )
    args = p.parse_args(argv)
    if args.quick:
        args.events, args.users, args.scale_users = 100_000, 10_000, 50_000
        args.latency_seconds, args.cap = 10, 300
        args.scale_cap, args.sweep_timeout, args.recovery_timeout = 600, 180, 180
    if args.rounds < 1:
        p.error("--rounds must be at least 1")
    if args.scale_events is None:
        args.scale_events = 2 * args.scale_users
    args.phases = list(dict.fromkeys(x.strip() for x in args.only.split(",") if x.strip()))
    unknown = set(args.phases) - set(PHASES)
    if unknown:
        p.error(f"unknown phases {sorted(unknown)}; choose from {', '.join(PHASES)}")
    return args


class Bench:
    """One run: the broker, the input, the contenders, and the results document."""

    def __init__(self, args: argparse.Namespace, sup: Supervisor, broker: Server) -> None:
        self.args = args
        self.sup = sup
        self.broker = broker
        self.bootstrap = f"127.0.0.1:{broker.port}"
        self.t0 = time.monotonic()
        self.end_ms = default_end_ms()
        # The `pulse` worker, plan and input for the latency step (see pulse_latency).
        self.latency_due: tuple[pulse_phase.PulseWorker, Plan, Loaded] | None = None
        # Appended to every consumer group, app id and state directory of a round after the
        # first, so that each round starts from nothing, as the first did.
        self.suffix = ""
        self.res: dict[str, Any] = {
            "config": {
                "events": args.events,
                "users": args.users,
                "partitions": args.partitions,
                "seed": args.seed,
                "scale_users": args.scale_users,
                "scale_events": args.scale_events,
                "rate": args.rate,
                "latency_seconds": args.latency_seconds,
                "cap_seconds": args.cap,
                "quick": args.quick,
                "phases": args.phases,
                "rounds": args.rounds,
                "policy": args.policy or "built-in defaults",
                "store": args.store,
                "peer_python": args.peer_python,
                "checkout": str(Path.cwd()),
                "end_ms": self.end_ms,
            },
            "machine": {
                "cpus": os.cpu_count(),
                "python": platform.python_version(),
                "platform": platform.platform(),
            },
            "timing_method": TIMING_METHOD,
            "throughput": [],
            "errors": [],
        }

    def say(self, text: str) -> None:
        print(f"[{time.monotonic() - self.t0:6.0f}s] {text}", flush=True)

    async def load_plan(
        self, topic: str, plan: Plan, configs: dict[str, str] | None = None
    ) -> Loaded:
        await create_topics(self.bootstrap, [topic], self.args.partitions, configs)
        self.say(f"loading {len(plan):,} events for {plan.spec.users:,} users into {topic}")
        loaded = await load(self.bootstrap, topic, plan.records())
        marks = await highwaters(self.bootstrap, topic)
        if marks != loaded.ends:
            raise RuntimeError(f"{topic}: high watermarks {marks} != acknowledged {loaded.ends}")
        self.say(f"loaded in {loaded.seconds:.1f}s ({loaded.records / loaded.seconds:,.0f}/s)")
        return loaded

    async def timed(
        self, run: Running, topic: str, loaded: Loaded, cap: float | None = None
    ) -> Throughput:
        result = await time_run(
            run,
            sup=self.sup,
            bootstrap=self.bootstrap,
            topic=topic,
            ends=loaded.ends,
            broker_pid=self.broker.proc.pid,
            cap_seconds=self.args.cap if cap is None else cap,
        )
        rate = f"{result.events_per_s:,.0f} events/s" if result.events_per_s else "no rate"
        self.say(f"{result.name}: {result.status}, {rate} {result.note}")
        return result

    async def run(self) -> None:
        a = self.args
        if any(name in a.phases for name in CONTENDERS):
            await self.contenders()
        if "scale" in a.phases:
            try:
                await self.scale(self.sup.log_dir / "data")
            except Exception as exc:
                self.error("scale phase", exc)

    async def contenders(self) -> None:
        a = self.args
        topic = "bench-events"
        plan = Plan(WorkloadSpec(a.events, a.users, self.end_ms, seed=a.seed))
        loaded = await self.load_plan(topic, plan, INPUT_TOPIC_CONFIGS)
        self.res["input"] = {
            "topic": topic,
            "records": loaded.records,
            "type_counts": plan.type_counts(),
            "out_of_order": plan.out_of_order(),
            "max_events_per_user": int(plan.per_user.max()),
            "load_rate": loaded.records / loaded.seconds,
            "end_ms": self.end_ms,
        }
        data_dir = self.sup.log_dir / "data"
        rounds: list[dict[str, Throughput]] = []
        done: list[Throughput] = []
        phases = [p for p in a.phases if p in CONTENDERS]
        # Every round runs the phases in the order given, the next in reverse, and so on:
        # the host drifts by tens of percent over a run here, so one fixed order always
        # favours the same phase (the issue's own figures were taken the same way).
        for k in range(1, a.rounds + 1):
            self.suffix = "" if k == 1 else f"-r{k}"
            order = phases if k % 2 else phases[::-1]
            if a.rounds > 1:
                self.say(f"round {k} of {a.rounds}: {', '.join(order)}")
            results = await self.contenders_round(order, topic, plan, loaded, data_dir)
            for r in results.values():
                r.round = k
            rounds.append(results)
            done += results.values()
            self.res["throughput"] = [r.to_json() for r in done]
        self.suffix = ""
        self.res["ratios_by_round"] = [ratios(r) for r in rounds]
        self.res["ratios"] = median_ratios(self.res["ratios_by_round"])
        if self.latency_due is not None:
            try:
                await self.pulse_latency(*self.latency_due)
            except Exception as exc:
                self.error("pulse latency step", exc)

    async def contenders_round(
        self, order: list[str], topic: str, plan: Plan, loaded: Loaded, data_dir: Path
    ) -> dict[str, Throughput]:
        """Each phase of `order` once, over the loaded input topic."""
        results: dict[str, Throughput] = {}
        child_max = self.args.cap + 300
        for name in order:
            self.say(f"contender {name}")
            try:
                if name == "ceiling":
                    run = start_ceiling(self.sup, self.bootstrap, topic, child_max, self.suffix)
                    results[name] = await self.timed(run, topic, loaded)
                    self.sup.stop(run.proc)
                elif name in ("naive", "windowed"):
                    run = start_naive(
                        self.sup,
                        self.bootstrap,
                        topic,
                        self.args.partitions,
                        child_max,
                        data_dir,
                        windowed=name == "windowed",
                        suffix=self.suffix,
                    )
                    results[name] = await self.timed(run, topic, loaded)
                    self.sup.stop(run.proc)
                elif name in PEERS:
                    results[name] = await self.peer(name, topic, loaded, data_dir)
                elif name == "pulse":
                    results[name] = await self.pulse_main(topic, plan, loaded, data_dir)
                elif name == "pulse-view":
                    results[name] = await self.pulse_view(topic, loaded, data_dir)
                else:
                    results[name] = await self.pulse_group(topic, loaded, data_dir)
            except Exception as exc:
                self.error(f"contender {name}", exc)
        return results

    async def peer(self, name: str, topic: str, loaded: Loaded, data_dir: Path) -> Throughput:
        """A peer doing the naive job, or a `skipped` result saying what is missing."""
        peer, python = PEERS[name], self.args.peer_python
        why = missing(peer, python)
        if why is not None:
            self.say(f"{name}: skipped: {why}")
            return Throughput(name, loaded.records, status="skipped", note=why)
        child_max = self.args.cap + 300
        run = start_peer(
            self.sup, peer, python, self.bootstrap, topic, child_max, data_dir, self.suffix
        )
        try:
            return await self.timed(run, topic, loaded)
        finally:
            self.sup.stop(run.proc)

    def error(self, where: str, exc: BaseException) -> None:
        self.say(f"{where} failed: {type(exc).__name__}: {exc}")
        traceback.print_exc()
        self.res["errors"].append(f"{where}: {type(exc).__name__}: {exc}")

    def worker(self, app_id: str, events_topic: str, data_dir: Path) -> pulse_phase.PulseWorker:
        return pulse_phase.PulseWorker(
            self.sup,
            self.bootstrap,
            app_id + self.suffix,
            events_topic,
            self.args.partitions,
            data_dir,
            policy_file=self.args.policy,
            store=self.args.store,
        )

    async def idle_rss(self, data_dir: Path) -> int:
        if "idle_rss_bytes" not in self.res:
            self.say("idle Pulse worker (empty table) for the RSS baseline")
            idle = self.worker("bench-pulse-idle", "bench-idle-events", data_dir)
            got = await pulse_phase.idle_rss(idle)
            self.res["idle_rss_bytes"] = got["rss_bytes"]
            self.say(f"idle worker RSS {got['rss_bytes'] / 2**20:.0f} MB")
        return int(self.res["idle_rss_bytes"])

    async def pulse_main(
        self, topic: str, plan: Plan, loaded: Loaded, data_dir: Path
    ) -> Throughput:
        """Throughput of one worker; in the first round also its RSS and state size, and the
        latency step waits for every other throughput phase (see pulse_latency)."""
        a = self.args
        first = "pulse" not in self.res
        idle = await self.idle_rss(data_dir)
        worker = self.worker("bench-pulse", topic, data_dir)
        await worker.create_topics()
        run = worker.start()
        out: dict[str, Any] = {"users": a.users}
        if first:
            self.res["pulse"] = out
        try:
            result = await self.timed(run, topic, loaded)
            if result.status != "ok" or not first:
                return result
            rss = sample(run.proc.pid).rss_bytes
            out.update(
                rss_bytes=rss,
                idle_rss_bytes=idle,
                rss_per_user_bytes=pulse_phase.rss_per_user(rss, idle, a.users),
            )
            self.say("reading the changelog for the state size per user")
            sizes = await pulse_phase.state_sizes(self.bootstrap, worker.changelog)
            out["state"] = sizes.to_json()
            self.latency_due = (worker, plan, loaded)
            return result
        finally:
            self.sup.stop(run.proc)

    async def pulse_latency(
        self, worker: pulse_phase.PulseWorker, plan: Plan, loaded: Loaded
    ) -> None:
        """The offered-load step, after every throughput phase: the `pulse` worker started
        again (it recovers its table from its changelog), then a paced producer appends
        --rate events/s to the input topic. Run before the other phases, its records would be
        theirs to process too."""
        a = self.args
        run = worker.start("pulse (latency)")
        try:
            # Faust logs it once the table is read back from the changelog.
            await pulse_phase.wait_log_line(self.sup, run, pulse_phase.READY_LINE, timeout=300)
            self.say("latency: the worker is ready (its table recovered)")
            self.say(f"offered load: {a.rate:,.0f} events/s for {a.latency_seconds:.0f}s")
            latency = await pulse_phase.offered_load(
                worker,
                run,
                plan,
                loaded.ends,
                rate=a.rate,
                seconds=a.latency_seconds,
                drain_timeout=max(60.0, 4 * a.latency_seconds),
                seed=a.seed,
            )
            latency["after_throughput_phases"] = True
            self.res["pulse"]["latency"] = latency
            c = latency["consume_to_emit"]
            self.say(f"latency: consume-to-emit p99 {c['p99_s']}")
        finally:
            self.sup.stop(run.proc)

    async def pulse_group(self, topic: str, loaded: Loaded, data_dir: Path) -> Throughput:
        """Several workers in one group (a fresh app: its own group, changelog and outputs),
        started together so that they join in the same round, as a deployment of N
        workers does; a rebalance during the run shows in its rate."""
        n = self.args.group_workers
        worker = self.worker("bench-pulse-group", topic, data_dir)
        await worker.create_topics()
        name = f"pulse, {n} workers"
        runs = [worker.start(name) for _ in range(n)]
        runs[0].peers = runs[1:]
        try:
            return await self.timed(runs[0], topic, loaded)
        finally:
            for run in runs:
                self.sup.stop(run.proc)

    async def pulse_view(self, topic: str, loaded: Loaded, data_dir: Path) -> Throughput:
        """One worker as deployed, with the Redis view on (its own redis-server): what the
        view writer costs the stream. The view trails the commits: how long it takes to catch
        up after the last commit, the writes and redis-server's CPU go in results["pulse_view"]."""
        redis = start_redis()
        try:
            worker = self.worker("bench-pulse-view", topic, data_dir)
            worker.redis_url = f"redis://127.0.0.1:{redis.port}/0"
            await worker.create_topics()
            run = worker.start("pulse, Redis view on")
            redis_cpu0 = sample(redis.proc.pid).cpu_seconds
            try:
                result = await self.timed(run, topic, loaded)
                if result.status == "ok":
                    ended = time.monotonic()
                    while time.monotonic() - ended < 300:
                        pending = total(await scrape(run.metrics_port), "pulse_view_pending")
                        if pending == 0:
                            break
                        await asyncio.sleep(0.1)
                    caught_up = time.monotonic() - ended
                    written = total(await scrape(run.metrics_port), "pulse_view_writes_total")
                    redis_cpu = sample(redis.proc.pid).cpu_seconds - redis_cpu0
                    view = {
                        "view_caught_up_after_s": caught_up,
                        "view_writes": written,
                        "redis_cpu_seconds": redis_cpu,
                    }
                    self.res.setdefault("pulse_view", view)  # the first round's
                    self.res.setdefault("pulse_view_by_round", []).append(view)
                    self.say(f"pulse-view: {view}")
                return result
            finally:
                self.sup.stop(run.proc)
        finally:
            redis.stop()

    async def scale(self, data_dir: Path) -> None:
        a = self.args
        topic = "bench-scale-events"
        plan = Plan(
            WorkloadSpec(a.scale_events, a.scale_users, self.end_ms, seed=a.seed + 1, id_prefix="s")
        )
        out: dict[str, Any] = {"users": a.scale_users, "events": a.scale_events}
        self.res["scale"] = out
        loaded = await self.load_plan(topic, plan)
        idle = await self.idle_rss(data_dir)
        worker = self.worker("bench-pulse-scale", topic, data_dir)
        await worker.create_topics()
        run = worker.start("pulse (scale load)")
        try:
            self.say(f"scale: Pulse worker loads {a.scale_users:,} users")
            load_result = await self.timed(run, topic, loaded, cap=a.scale_cap)
            out["load"] = load_result.to_json()
            if load_result.status != "ok":
                return
            rss = sample(run.proc.pid).rss_bytes
            out.update(
                rss_bytes=rss,
                idle_rss_bytes=idle,
                rss_per_user_bytes=pulse_phase.rss_per_user(rss, idle, a.scale_users),
            )
            self.say("scale: reading the changelog for the state size per user")
            sizes = await pulse_phase.state_sizes(self.bootstrap, worker.changelog)
            out["state"] = sizes.to_json()
            self.say("scale: kill -9 and recovery")
            out["recovery"], run = await pulse_phase.recovery(
                worker, run, sizes, timeout=a.recovery_timeout
            )
            self.say(f"scale: recovery {out['recovery']}")
            out["idle_cpu_per_s"] = await pulse_phase.idle_cpu(run, 16)
            out["sweeps"] = await self.sweeps(worker, run)
        finally:
            self.sup.stop(run.proc)

    async def sweeps(self, worker: pulse_phase.PulseWorker, run: Running) -> dict[str, Any]:
        """Single ticks and the CPU each takes.

        Catch-up ticks move event time by hours at once (from the users' last events to now,
        then to the next midnight, then a whole day): they sweep every checkpoint in between,
        as a worker does after standing still that long. Day-boundary ticks move it by two
        seconds across a UTC midnight (due: the users for whom a day leaving a window changes
        a decision), routine ticks by 5 s (due: the few whose silence threshold, say, falls in
        those seconds). A running worker ticks every few seconds, so only the last two kinds
        are single sweeps of a live worker: the targets are about them.
        """
        a = self.args
        now = int(time.time() * 1000)
        day1 = pulse_phase.next_midnight(now)
        day2 = day1 + 86_400_000
        plan = [
            ("catch-up to now", now),
            ("catch-up to midnight 1", day1 - 1000),
            ("day-boundary 1", day1 + 1000),
            ("routine 1", day1 + 6000),
            ("routine 2", day1 + 11_000),
            ("routine 3", day1 + 16_000),
            ("catch-up of a day", day2 - 1000),
            ("day-boundary 2", day2 + 1000),
        ]
        runs: list[dict[str, Any]] = []
        for label, tick in plan:
            self.say(f"scale: sweep {label}")
            r = await pulse_phase.sweep_cost(
                worker, run, tick, label=label, timeout=a.sweep_timeout
            )
            self.say(f"scale: sweep {label}: {r}")
            runs.append(r)
            if r["status"] != "ok":
                break  # later ticks would queue behind this one

        def worst(prefix: str) -> float | None:
            mine = [r for r in runs if r["label"].startswith(prefix)]
            if not mine or any(r["status"] != "ok" for r in mine):
                return None
            return max(float(r["cpu_seconds"]) for r in mine)

        return {
            "runs": runs,
            "routine_cpu_seconds": worst("routine"),
            "day_boundary_cpu_seconds": worst("day-boundary"),
            "catch_up_day_cpu_seconds": worst("catch-up of a day"),
            "note": "routine, day-boundary, catch-up of a day: the most CPU any of their ticks"
            " took",
        }


def ratios(results: dict[str, Throughput]) -> dict[str, float | None]:
    def rate(name: str) -> float | None:
        r = results.get(name)
        return r.events_per_s if r is not None else None

    out: dict[str, float | None] = {}
    for mine, prefix in (
        ("pulse", "pulse"),
        ("pulse-group", "pulse_group"),
        ("pulse-view", "pulse_view"),
    ):
        pulse = rate(mine)
        for other, key in (
            ("naive", "over_naive"),
            ("windowed", "over_naive_windowed"),
            ("quix", "over_quix"),
            ("bytewax", "over_bytewax"),
            ("ceiling", "over_ceiling"),
            ("pulse", "over_pulse"),
        ):
            if other == mine:
                continue
            base = rate(other)
            out[f"{prefix}_{key}"] = pulse / base if pulse and base else None
    return out


def median_ratios(by_round: list[dict[str, float | None]]) -> dict[str, float | None]:
    """Each ratio's median over the rounds that have it (None where none has)."""
    out: dict[str, float | None] = {}
    for key in by_round[0] if by_round else ():
        got = [v for r in by_round if (v := r.get(key)) is not None]
        out[key] = statistics.median(got) if got else None
    return out


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    log_dir = Path(".pulse/bench").resolve() / stamp
    log_dir.mkdir(parents=True, exist_ok=True)
    # Ctrl-C and SIGTERM both unwind through the teardown below (also when started in the
    # background, where a shell leaves SIGINT ignored).
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    sup = Supervisor(log_dir)
    started = time.monotonic()
    code = 0
    bench: Bench | None = None
    try:
        broker = start_tansu(log_dir=log_dir)
        sup.add_server(broker)
        bench = Bench(args, sup, broker)
        bench.say(f"Tansu on 127.0.0.1:{broker.port}; logs in {log_dir}")
        asyncio.run(bench.run())
    except KeyboardInterrupt:
        print("\ninterrupted: stopping every process", file=sys.stderr)
        if bench is not None:
            bench.res["errors"].append("interrupted")
        code = 130
    except Exception as exc:
        traceback.print_exc()
        if bench is not None:
            bench.res["errors"].append(f"{type(exc).__name__}: {exc}")
        code = 1
    finally:
        if bench is not None:
            try:
                bench.res["broker_peak_rss_bytes"] = sample(bench.broker.proc.pid).peak_rss_bytes
            except OSError:
                pass
        sup.stop_all()
    if bench is None:
        return code or 1
    res = bench.res
    res["wall_seconds"] = round(time.monotonic() - started, 1)
    res["logs"] = str(log_dir)
    res["targets"] = evaluate(res)
    print()
    print(render(res))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(res, indent=2, default=str) + "\n")
    print(f"\nresults written to {args.out}; logs in {log_dir}")
    return code


if __name__ == "__main__":
    raise SystemExit(main())
