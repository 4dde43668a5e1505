"""The `pulse` console script: worker, topics, demo, replay, fit, and `run` (the embedded stack)."""

from __future__ import annotations

import argparse
import asyncio
import gc
import logging
import sys
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, TypeVar

from streams.core.policy import PolicyError, load_policy
from streams.settings import WorkerSettings

T = TypeVar("T")

if TYPE_CHECKING:
    from streams.offline.evaluation import Evaluation
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
    """Exit 2 when the policy cannot be used or the broker does not answer; a Redis that does
    not answer is a warning (the view is written once it does)."""
    import faust

    from streams import metrics
    from streams.preflight import Unreachable, require_broker, require_redis
    from streams.worker.app import build_app

    settings = WorkerSettings()
    try:
        policy = load_policy(settings.policy_file, settings.churn_model_file)
        require_broker(settings.bootstrap)
    except (PolicyError, Unreachable) as exc:
        print(f"pulse worker: {exc}", file=sys.stderr)
        return 2
    if settings.redis_url:
        try:
            require_redis(settings.redis_url)
        except Unreachable as exc:
            print(
                f"pulse worker: warning: {exc}; the view is written once it answers",
                file=sys.stderr,
            )
    app, _proc = build_app(settings, policy)
    if settings.metrics_port:
        metrics.serve(settings.metrics_host, settings.metrics_port)
    _tune_gc(settings.gc_threshold)
    worker = faust.Worker(app, loglevel=settings.log_level)
    worker.execute_from_commandline()
    return 0


def _api(_: argparse.Namespace) -> int:
    """Exit 2 when PULSE_API_KEYS or the policy cannot be used. A broker or Redis that does
    not answer is a warning: the API serves without them (503 for what needs them)."""
    from services.app import serve
    from services.auth import parse_api_keys
    from services.settings import ApiSettings
    from streams.preflight import Unreachable, require_broker, require_redis

    settings = ApiSettings()
    try:
        parse_api_keys(settings.api_keys.get_secret_value())
        # The worker's policy: the view's documents and the tiers the API accepts follow it.
        policy = load_policy(settings.policy_file, settings.churn_model_file)
    except (ValueError, PolicyError) as exc:
        print(f"pulse api: {exc}", file=sys.stderr)
        return 2
    for require, target, effect in (
        (require_redis, settings.redis_url, "reads answer 503"),
        (require_broker, settings.bootstrap, "ingestion and erasure answer 503"),
    ):
        try:
            if target:
                require(target)
        except Unreachable as exc:
            print(f"pulse api: warning: {exc}; until it answers, {effect}", file=sys.stderr)
    serve(settings, policy)
    return 0


def _with_broker(
    command: str, bootstrap: str, work: Callable[[], Awaitable[T]], fails: str
) -> T | None:
    """`work()` run once the broker answers; None, with the reason said in one line on stderr,
    when it does not answer or `work` fails against it (`fails` says what failed)."""
    from aiokafka.errors import KafkaError

    from streams.preflight import Unreachable, check_broker

    async def main() -> T:
        await check_broker(bootstrap)
        return await work()

    try:
        return asyncio.run(main())
    except Unreachable as exc:
        print(f"pulse {command}: {exc}", file=sys.stderr)
    except KafkaError as exc:
        print(f"pulse {command}: the broker at {bootstrap} {fails}: {exc}", file=sys.stderr)
    return None


def _topics(_: argparse.Namespace) -> int:
    """Exit 2 when the broker does not answer or refuses to create the topics."""
    from streams.worker.topics import ensure_topics

    settings = WorkerSettings()
    created = _with_broker(
        "topics",
        settings.bootstrap,
        lambda: ensure_topics(settings),
        "did not create the topics",
    )
    if created is None:
        return 2
    print("created: " + (", ".join(created) if created else "nothing (all topics exist)"))
    return 0


def _demo(args: argparse.Namespace) -> int:
    """Exit 2 when the broker does not answer, or fails while the demo sends."""
    import time

    from streams.local.demo import run_demo

    settings = WorkerSettings()
    origin = settings.clock_origin_ms or int(time.time() * 1000)
    counts = _with_broker(
        "demo",
        settings.bootstrap,
        lambda: run_demo(
            settings.bootstrap,
            settings.events_topic,
            origin_ms=origin,
            rate=settings.clock_rate,
            users=args.users,
            seed=args.seed,
        ),
        "failed",
    )
    if counts is None:
        return 2
    print(counts)
    return 0


def _rebuild_view(_: argparse.Namespace) -> int:
    """Exit 2 when the policy cannot be used or the broker or Redis does not answer (also
    when one goes away during the rebuild: run it again)."""
    import redis.asyncio as aioredis
    from aiokafka.errors import KafkaConnectionError
    from redis.exceptions import ConnectionError as RedisConnectionError
    from redis.exceptions import TimeoutError as RedisTimeoutError

    from streams.preflight import (
        Unreachable,
        broker_unreachable,
        check_broker,
        check_redis,
        redis_unreachable,
    )
    from streams.view.rebuild import rebuild_view
    from streams.view.writer import View

    settings = WorkerSettings()
    try:
        # The states it rebuilds are read with this policy by the worker and the API: an
        # unusable one is refused here, as they would refuse it.
        load_policy(settings.policy_file, settings.churn_model_file)
    except PolicyError as exc:
        print(f"pulse rebuild-view: {exc}", file=sys.stderr)
        return 2

    async def main() -> int:
        await check_redis(settings.redis_url)
        await check_broker(settings.bootstrap)
        client = aioredis.from_url(settings.redis_url)
        try:
            view = View(
                client,
                settings.view_prefix,
                settings.timeline_bucket_ms,
                settings.timeline_buckets,
            )
            return await rebuild_view(settings, view)
        except KafkaConnectionError as exc:
            raise broker_unreachable(settings.bootstrap) from exc
        except (RedisConnectionError, RedisTimeoutError) as exc:
            raise redis_unreachable(settings.redis_url) from exc
        finally:
            await client.aclose()

    try:
        users = asyncio.run(main())
    except Unreachable as exc:
        print(f"pulse rebuild-view: {exc}", file=sys.stderr)
        return 2
    print(f"rebuilt the view of {users} users")
    return 0


def _replay(args: argparse.Namespace) -> int:
    """Exit 0 with the outputs written; 2 if the input or options cannot be used; 1 if the
    run finished but is refused (an empty history, or most records rejected: see
    streams.offline.replay.ensure_usable), with the reasons and their counts on stderr."""
    from pathlib import Path

    from streams.core.eventtime import TimestampError, parse_ts
    from streams.offline.backtest import run_backtest
    from streams.offline.fit import parse_until
    from streams.offline.history import HistoryError
    from streams.offline.replay import ReplayRefused, ensure_usable

    try:
        policy = load_policy(args.policy, args.churn_model)
        until = parse_ts(args.until) if args.until else None
        judge_from = parse_until(args.judge_from) if args.judge_from else None
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
            judge_from=judge_from,
            contacted=args.contacted,
        )
    except (PolicyError, TimestampError, HistoryError, OSError) as exc:
        print(f"pulse replay: {exc}", file=sys.stderr)
        return 2
    s = data["summary"]
    print(
        f"replayed {s['events']} events of {s['users']} users in {s['seconds']:.2f}s: "
        f"{s['outputs']}, dead letters {s['dead_letters'] or 'none'}"
    )
    try:
        ensure_usable(s["events"], s["duplicates"], s["dead_letters"])
    except ReplayRefused as exc:
        print(f"pulse replay: refused ({exc.code}): {exc}", file=sys.stderr)
        print(f"pulse replay: what was replayed is in {args.out}/ for inspection", file=sys.stderr)
        return 1
    ev = data["evaluation"]
    if ev:
        _print_evaluation(ev)
    print(f"written to {args.out}/ (outputs.jsonl, summary.json, report.html)")
    return 0


def _print_evaluation(ev: Evaluation) -> None:
    """The judged figures, one line per rule: what an analyst reads before the report."""
    since = f" from {ev['judge_from'][:10]}" if ev["judge_from"] else ""
    print(f"judged{since} at a {ev['horizon_days']:g}-day horizon (lead: days before it closes):")
    if ev["pr_curve"] is not None:
        print(f"  pulse's rule: {ev['pr_curve']['operating_rule']}")
    rows = [("pulse", ev["pulse"]["overall"])] + [(r["rule"], r["overall"]) for r in ev["rules"]]
    for name, s in rows:
        print(
            f"  {name:<16} warnings {s['warned']:>6}  precision {s['precision']}  recall "
            f"{s['recall']}  median lead {s['lead_days']['median']}  median delay "
            f"{s['delay_days']['median']}  came back later {s['returned_later']}"
        )
    overall = ev["pulse"]["overall"]
    if not overall["churned"]:
        print(
            f"  no churn could be judged: one needs {ev['horizon_days']:g} days of silence "
            "inside the history, and the warnings judged are only those whose user came back "
            "(hence a low precision); pass a shorter --horizon-days or a longer history"
        )
    auc = ev["auc"]
    snap = auc["at_snapshot"]
    silence = auc["at_silence"]
    figures = [f"at warnings {auc['at_warnings']['auc']}"]
    if silence is not None:
        figures.append(f"at '{auc['silence_rule']}' moments {silence['auc']}")
    if snap is not None:
        figures.append(f"at the snapshot {snap['auc']}")
    missing = "" if silence is not None else " (the rest needs a churn model: --churn-model)"
    print(f"risk score ROC AUC: {', '.join(figures)}{missing}")
    if ev["snapshot"] is not None:
        cal = ev["snapshot"]["calibration"]
        print(
            f"calibration at {ev['snapshot']['at'][:10]}: {cal['n']} users, largest decile gap "
            f"{cal['max_abs_gap']}"
        )
    churned = ev["stage_quality"]["churned"]
    print(
        f"churned transitions followed by a return: {churned['returned']} of "
        f"{churned['transitions']} ({churned['share']})"
    )


def _fit(args: argparse.Namespace) -> int:
    from pathlib import Path

    from streams.core.bgnbd import FitError
    from streams.core.eventtime import TimestampError
    from streams.core.policy import ChurnModel
    from streams.offline.fit import fit_history, parse_until, write_params, write_policy
    from streams.offline.history import HistoryError
    from streams.offline.riskmodel import rule_text

    try:
        policy = load_policy(args.policy)
        until = parse_until(args.until) if args.until else None
        mapping = _csv_mapping(args)
        params = fit_history(
            Path(args.file),
            until_ms=until,
            mapping=mapping,
            passive_types=policy.passive_types,
            spend_types=policy.spend_types,
            rfm_window_days=policy.rfm.window_days,
            horizon_days=args.horizon_days,
            min_silence_days=args.min_silence_days,
            target_recall=args.target_recall,
            min_lead_days=args.min_lead_days,
        )
        write_params(params, Path(args.out))
        policy_out = Path(args.policy_out or Path(args.out).with_suffix(".policy.toml"))
        write_policy(params, policy_out)
    except (PolicyError, TimestampError, HistoryError, FitError, OSError) as exc:
        print(f"pulse fit: {exc}", file=sys.stderr)
        return 2
    p = params
    if "r" in p:
        print(
            f"BG/NBD on {p['customers']} users ({p['repeat_customers']} with "
            f"{p['repeat_active_days']} repeat active days) before {args.until or 'the end'} "
            f"(to {p['calibration_end']}), weeks: r {p['r']:.6f} alpha {p['alpha']:.6f} "
            f"a {p['a']:.6f} b {p['b']:.6f}; log-likelihood {p['log_likelihood']:.4f}"
        )
        print(
            f"stages: dormant after {p['dormant_after_days']} days, churned after "
            f"{p['churned_after_days']} days of silence"
        )
    else:
        print(f"empirical model only (BG/NBD: {p['bgnbd_error']})")
    if "rfm" in p:
        b = p["rfm"]
        print(
            f"RFM boundaries (quintiles, {policy.rfm.window_days}-day window): recency days "
            f"{b['recency_days']}, purchases {b['frequency']}, spend {b['monetary']}"
        )
    choice = p["warn_level_choice"]
    if choice["recall"] is None:
        print(
            f"warning level {p['warn_probability']} (the default: no churn to judge inside the "
            "calibration's last 120 days; a longer history would choose it)"
        )
    else:
        print(
            f"warning rule: {rule_text(ChurnModel.model_validate(p))} "
            f"({'meets' if choice['met'] else 'misses'} the "
            f"targets inside the calibration: precision {choice['precision']} recall "
            f"{choice['recall']} median lead {choice['median_lead_days']} days); "
            f"{p['seconds']:.2f}s"
        )
    if p["skipped"]:
        print(f"skipped records: {p['skipped']}")
    print(f"written to {args.out} and {policy_out} (review the stage thresholds there)")
    return 0


def _run(args: argparse.Namespace) -> int:
    from streams.local.launcher import run_stack

    return run_stack(users=args.users, rate=args.rate, partitions=args.partitions, seed=args.seed)


def _send(args: argparse.Namespace) -> int:
    """Exit 0 when the API accepted the event, 1 when it rejected it (the reason is in its
    answer), 2 when it could not be sent (no API, refused key): one line on stderr."""
    import json

    from streams.local.send import SendError, build_event, event_time_now, resolve_target, send

    try:
        url, key = resolve_target(args.url, args.key)
        ts = args.ts if args.ts is not None else event_time_now(url)
        event = build_event(
            user=args.user, etype=args.type, ts=ts, amount=args.amount, event_id=args.event_id
        )
        answer = send(url, key, event)
    except SendError as exc:
        print(f"pulse send: {exc}", file=sys.stderr)
        return 2
    print(json.dumps({"sent": event, "answer": answer}, indent=2))
    if answer.get("rejected"):
        result = answer["results"][0]
        print(f"pulse send: rejected ({result['reason']}): {result['detail']}", file=sys.stderr)
        return 1
    return 0


def _env(_: argparse.Namespace) -> int:
    """Print `API_URL=...` and `KEY=...` of the stack `pulse run` started in this directory,
    for `eval "$(pulse env)"`. Exit 2, with one line on stderr, when it saved none. It reads
    the saved state only: a stack that was stopped leaves its last URL and key there."""
    from streams.local.state import RUN_DIR, STATE_FILE, load_state, shell_assignments

    state = load_state()
    if state is None or state.api_url is None:
        print(
            f"pulse env: no stack state in {RUN_DIR / STATE_FILE}: start the stack with "
            "`make run` (`pulse run`) in this directory",
            file=sys.stderr,
        )
        return 2
    print(shell_assignments(state))
    return 0


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
    rp.add_argument(
        "file",
        help="events: .jsonl in the input contract, or .csv/.tsv, in any order (replayed in "
        "event time); exits 1 if it is empty or most records are rejected",
    )
    rp.add_argument("--out", default="replay-out", help="output directory (default replay-out)")
    rp.add_argument("--policy", default=None, help="policy file (default: built-in defaults)")
    rp.add_argument(
        "--churn-model", default=None, help="`pulse fit` model: risk and warnings from it"
    )
    rp.add_argument("--until", default=None, help="let event time run to this time at the end")
    rp.add_argument(
        "--judge-from",
        default=None,
        help="judge warnings and churns from this date or time on (the `pulse fit --until` cut)",
    )
    rp.add_argument(
        "--contacted",
        action="store_true",
        help="the history's treated users were contacted: report the recall uplift",
    )
    rp.add_argument(
        "--horizon-days",
        type=float,
        default=None,
        help="churn horizon for the evaluation (default: the model's, else churned_after_days)",
    )
    rp.add_argument(
        "--baseline-days",
        type=float,
        default=14,
        help="the baseline rule warns after this many silent days (default 14)",
    )
    _add_csv_options(rp)
    rp.add_argument("--quiet", action="store_true", help="no progress bar")
    ft = sub.add_parser("fit", help="fit the churn model to a history file")
    ft.add_argument("file", help="events: .jsonl in the input contract, or .csv/.tsv/.txt")
    ft.add_argument("--out", default="churn-model.json", help="model file to write")
    ft.add_argument(
        "--policy-out",
        default=None,
        help="proposed stage thresholds to review (default: the model file's name .policy.toml)",
    )
    ft.add_argument(
        "--until",
        default=None,
        help="the cut: fit on the events before this date or time (default: the whole file)",
    )
    ft.add_argument(
        "--policy", default=None, help="policy file: its passive_types are not activity"
    )
    ft.add_argument("--horizon-days", type=float, default=60, help="churn horizon (default 60)")
    ft.add_argument(
        "--min-silence-days", type=float, default=7, help="no warning before this (default 7)"
    )
    ft.add_argument(
        "--target-recall", type=float, default=0.6, help="warning level choice (default 0.6)"
    )
    ft.add_argument(
        "--min-lead-days", type=float, default=45, help="warning level choice (default 45)"
    )
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
    run.add_argument("--seed", type=int, default=7, help="demo seed: same seed, same users")
    snd = sub.add_parser(
        "send", help="send one event to the running API, stamped with its event-time clock"
    )
    snd.add_argument("--user", required=True, help="user id")
    snd.add_argument("--type", required=True, help="event type, e.g. purchase, session_start")
    snd.add_argument("--amount", default=None, help="amount (a decimal, e.g. 10 or 19.90)")
    snd.add_argument(
        "--ts",
        default=None,
        help="event time, RFC 3339 or epoch millis (default: the API's event time now, the "
        "demo's clock under `pulse run`)",
    )
    snd.add_argument("--event-id", default=None, help="event id (default: a new UUID)")
    snd.add_argument(
        "--url", default=None, help="API URL (default: the one `pulse run` saved in .pulse/run/)"
    )
    snd.add_argument(
        "--key", default=None, help="API key with the ingest scope (default: `pulse run`'s)"
    )
    sub.add_parser(
        "env",
        help="print API_URL=... and KEY=... of the stack `pulse run` started here, for "
        '`eval "$(pulse env)"`',
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    handlers = {
        "worker": _worker,
        "topics": _topics,
        "demo": _demo,
        "run": _run,
        "send": _send,
        "env": _env,
        "rebuild-view": _rebuild_view,
        "api": _api,
        "replay": _replay,
        "fit": _fit,
    }
    return handlers[args.command](args)


if __name__ == "__main__":
    sys.exit(main())
