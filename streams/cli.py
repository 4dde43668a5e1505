"""The `pulse` console script: worker, topics, demo, replay, fit, and `run` (the embedded stack)."""

from __future__ import annotations

import argparse
import asyncio
import gc
import logging
import sys
from typing import TYPE_CHECKING

from streams.core.policy import PolicyError, load_policy
from streams.settings import WorkerSettings

if TYPE_CHECKING:
    from streams.offline.history import CsvMapping


def _tune_gc(threshold: tuple[int, int, int]) -> None:
    """Collect reference cycles less often than Python's default (700 allocations).

    A batch allocates many short-lived containers (outputs, records, working states) and
    the default made the collector run constantly: 14.8k -> 20.1k events/s over the
    benchmark's 1M events with (200000, 50, 1000), RSS unchanged. Objects from start-up are
    frozen out of collections altogether.
    """
    gc.freeze()
    gc.set_threshold(*threshold)


def _worker(_: argparse.Namespace) -> int:
    import faust

    from streams import metrics
    from streams.worker.app import build_app

    settings = WorkerSettings()
    try:
        policy = load_policy(settings.policy_file, settings.churn_model_file)
    except PolicyError as exc:
        print(f"pulse worker: {exc}", file=sys.stderr)
        return 2
    app, _proc = build_app(settings, policy)
    if settings.metrics_port:
        metrics.serve(settings.metrics_host, settings.metrics_port)
    _tune_gc(settings.gc_threshold)
    worker = faust.Worker(app, loglevel=settings.log_level)
    worker.execute_from_commandline()
    return 0


def _api(_: argparse.Namespace) -> int:
    from services.app import serve

    serve()
    return 0


def _topics(_: argparse.Namespace) -> int:
    from streams.worker.topics import ensure_topics

    created = asyncio.run(ensure_topics(WorkerSettings()))
    print("created: " + (", ".join(created) if created else "nothing (all topics exist)"))
    return 0


def _demo(args: argparse.Namespace) -> int:
    import time

    from streams.local.demo import run_demo

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

    from streams.view.rebuild import rebuild_view
    from streams.view.writer import View

    settings = WorkerSettings()
    policy = load_policy(settings.policy_file, settings.churn_model_file)

    async def main() -> int:
        client = aioredis.from_url(settings.redis_url)
        try:
            return await rebuild_view(settings, View(client, settings.view_prefix, policy))
        finally:
            await client.aclose()

    print(f"rebuilt the view of {asyncio.run(main())} users")
    return 0


def _replay(args: argparse.Namespace) -> int:
    from pathlib import Path

    from streams.core.eventtime import TimestampError, parse_ts
    from streams.offline.backtest import run_backtest
    from streams.offline.history import HistoryError

    try:
        policy = load_policy(args.policy, args.churn_model)
        until = parse_ts(args.until) if args.until else None
        mapping = _csv_mapping(args)
        data = run_backtest(
            Path(args.file),
            Path(args.out),
            policy,
            mapping=mapping,
            until_ms=until,
            horizon_days=args.horizon_days,
            baseline_days=args.baseline_days,
            progress=not args.quiet,
        )
    except (PolicyError, TimestampError, HistoryError, OSError) as exc:
        print(f"pulse replay: {exc}", file=sys.stderr)
        return 2
    s = data["summary"]
    print(
        f"replayed {s['events']} events of {s['users']} users in {s['seconds']:.2f}s: "
        f"{s['outputs']}, dead letters {s['dead_letters'] or 'none'}"
    )
    ev = data["evaluation"]
    if ev:
        p, b = ev["pulse"]["overall"], ev["baseline"]["overall"]
        print(
            f"warnings: precision {p['precision']} recall {p['recall']} "
            f"(baseline '{ev['baseline']['rule']}': precision {b['precision']} "
            f"recall {b['recall']})"
        )
    print(f"written to {args.out}/ (outputs.jsonl, summary.json, report.html)")
    return 0


def _fit(args: argparse.Namespace) -> int:
    from pathlib import Path

    from streams.core.bgnbd import FitError
    from streams.core.eventtime import TimestampError
    from streams.offline.fit import fit_history, parse_until, write_params
    from streams.offline.history import HistoryError

    try:
        policy = load_policy(args.policy)
        until = parse_until(args.until) if args.until else None
        mapping = _csv_mapping(args)
        params = fit_history(
            Path(args.file), until_ms=until, mapping=mapping, purchase_types=policy.spend_types
        )
        write_params(params, Path(args.out))
    except (PolicyError, TimestampError, HistoryError, FitError, OSError) as exc:
        print(f"pulse fit: {exc}", file=sys.stderr)
        return 2
    p = params
    print(
        f"BG/NBD on {p['customers']} customers ({p['repeat_customers']} with "
        f"{p['repeat_purchases']} repeat purchase days) to {p['calibration_end']}, weeks: "
        f"r {p['r']:.6f} alpha {p['alpha']:.6f} a {p['a']:.6f} b {p['b']:.6f}; "
        f"log-likelihood {p['log_likelihood']:.4f} ({p['seconds']:.2f}s)"
    )
    if p["skipped"]:
        print(f"skipped records: {p['skipped']}")
    print(f"written to {args.out}")
    return 0


def _run(args: argparse.Namespace) -> int:
    from streams.local.launcher import run_stack

    return run_stack(users=args.users, rate=args.rate, partitions=args.partitions)


def _add_csv_options(parser: argparse.ArgumentParser) -> None:
    """How to read a CSV history (`pulse replay`, `pulse fit`)."""
    parser.add_argument("--user-col", default="user_id", help="CSV: user column")
    parser.add_argument(
        "--time-col", default="ts", help="CSV: time column (RFC 3339, date, millis)"
    )
    parser.add_argument("--amount-col", default="amount", help="CSV: amount column ('' for none)")
    parser.add_argument("--type-col", default="type", help="CSV: event type column")
    parser.add_argument("--id-col", default="event_id", help="CSV: event id column")
    parser.add_argument("--default-type", default="purchase", help="CSV: type when no type column")
    parser.add_argument(
        "--delimiter", default=",", help="CSV: delimiter, or 'whitespace' for runs of blanks"
    )
    parser.add_argument(
        "--columns", default="", help="CSV without a header row: its column names, comma-separated"
    )


def _csv_mapping(args: argparse.Namespace) -> CsvMapping:
    from streams.offline.history import CsvMapping

    return CsvMapping(
        user=args.user_col,
        time=args.time_col,
        amount=args.amount_col,
        type=args.type_col,
        event_id=args.id_col,
        default_type=args.default_type,
        delimiter=args.delimiter,
        columns=tuple(c.strip() for c in args.columns.split(",")) if args.columns else (),
    )


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
    rp = sub.add_parser("replay", help="run a history file (JSONL/CSV) through the core")
    rp.add_argument("file", help="events: .jsonl in the input contract, or .csv/.tsv")
    rp.add_argument("--out", default="replay-out", help="output directory (default replay-out)")
    rp.add_argument("--policy", default=None, help="policy file (default: built-in defaults)")
    rp.add_argument("--churn-model", default=None, help="`pulse fit` parameters: P(alive) in risk")
    rp.add_argument("--until", default=None, help="let event time run to this time at the end")
    rp.add_argument(
        "--horizon-days",
        type=float,
        default=None,
        help="churn horizon for the evaluation (default: policy churned_after_days)",
    )
    rp.add_argument(
        "--baseline-days",
        type=float,
        default=14,
        help="the baseline rule warns after this many silent days (default 14)",
    )
    _add_csv_options(rp)
    rp.add_argument("--quiet", action="store_true", help="no progress bar")
    ft = sub.add_parser("fit", help="fit the BG/NBD churn model to a history file")
    ft.add_argument("file", help="events: .jsonl in the input contract, or .csv/.tsv/.txt")
    ft.add_argument("--out", default="churn-model.json", help="parameters file to write")
    ft.add_argument(
        "--until",
        default=None,
        help="calibration end: date or time; its UTC day is included (default: last purchase)",
    )
    ft.add_argument("--policy", default=None, help="policy file: its spend_types are purchases")
    _add_csv_options(ft)
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
        "replay": _replay,
        "fit": _fit,
    }
    return handlers[args.command](args)


if __name__ == "__main__":
    sys.exit(main())
