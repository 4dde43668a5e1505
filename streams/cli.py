"""The `pulse` console script: worker, topics, demo, and `run` (the whole embedded stack)."""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys

from streams.policy import PolicyError, load_policy
from streams.settings import WorkerSettings


def _worker(_: argparse.Namespace) -> int:
    import faust

    from streams import metrics
    from streams.worker import build_app

    settings = WorkerSettings()
    try:
        policy = load_policy(settings.policy_file)
    except PolicyError as exc:
        print(f"pulse worker: {exc}", file=sys.stderr)
        return 2
    app, _proc = build_app(settings, policy)
    if settings.metrics_port:
        metrics.serve(settings.metrics_host, settings.metrics_port)
    worker = faust.Worker(app, loglevel=settings.log_level)
    worker.execute_from_commandline()
    return 0


def _api(_: argparse.Namespace) -> int:
    from services.app import serve

    serve()
    return 0


def _topics(_: argparse.Namespace) -> int:
    from streams.topics import ensure_topics

    created = asyncio.run(ensure_topics(WorkerSettings()))
    print("created: " + (", ".join(created) if created else "nothing (all topics exist)"))
    return 0


def _demo(args: argparse.Namespace) -> int:
    import time

    from streams.demo import run_demo

    settings = WorkerSettings()
    origin = settings.clock_origin_ms or int(time.time() * 1000)
    counts = asyncio.run(
        run_demo(
            settings.bootstrap,
            settings.events_topic,
            origin_ms=origin,
            rate=settings.clock_rate,
            users=args.users,
            seed=args.seed,
        )
    )
    print(counts)
    return 0


def _rebuild_view(_: argparse.Namespace) -> int:
    import redis.asyncio as aioredis

    from streams.rebuild import rebuild_view
    from streams.view import View

    settings = WorkerSettings()
    policy = load_policy(settings.policy_file)

    async def main() -> int:
        client = aioredis.from_url(settings.redis_url)
        try:
            return await rebuild_view(settings, View(client, settings.view_prefix, policy))
        finally:
            await client.aclose()

    print(f"rebuilt the view of {asyncio.run(main())} users")
    return 0


def _run(args: argparse.Namespace) -> int:
    from streams.launcher import run_stack

    return run_stack(users=args.users, rate=args.rate, partitions=args.partitions)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="pulse", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("worker", help="run a Faust worker (settings from PULSE_* variables)")
    sub.add_parser("api", help="run the HTTP state API (settings from PULSE_* variables)")
    sub.add_parser("topics", help="create the topics Pulse uses (idempotent)")
    sub.add_parser("rebuild-view", help="rebuild the Redis view from the changelog and outputs")
    demo = sub.add_parser("demo", help="publish demo users to the events topic")
    demo.add_argument("--users", type=int, default=200)
    demo.add_argument("--seed", type=int, default=7)
    run = sub.add_parser("run", help="run broker, Redis, worker and demo on loopback")
    run.add_argument("--users", type=int, default=200, help="demo users (default 200)")
    run.add_argument(
        "--rate",
        type=float,
        default=28_800,
        help="event-time speed-up of the demo clock (default 28800: a day every 3 s)",
    )
    run.add_argument("--partitions", type=int, default=4)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    handlers = {
        "worker": _worker,
        "topics": _topics,
        "demo": _demo,
        "run": _run,
        "rebuild-view": _rebuild_view,
        "api": _api,
    }
    return handlers[args.command](args)


if __name__ == "__main__":
    sys.exit(main())
