"""`pulse replay`: run a history file through the core and write what Pulse would have said.

Writes `outputs.jsonl` (the lifecycle/warning/tier events, same schemas as the topics, with
`emitted_at` = the replay's watermark when they were emitted), `summary.json`, and the HTML
report with its charts, into one directory.
"""

from __future__ import annotations

import time
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path
from statistics import median
from typing import cast

import msgspec

from streams.core.eventtime import DAY_MS, format_ts
from streams.core.holdout import Group
from streams.core.lifecycle import Stage
from streams.core.outputs import Kind, encode_output
from streams.core.policy import Policy
from streams.core.recall import comparison_doc, comparisons, totals_of_tallies
from streams.core.retention import DAY, WEEK, cohort_doc, triangle
from streams.offline.evaluation import evaluate
from streams.offline.history import CsvMapping, read_history
from streams.offline.replay import ReplayRun, replay
from streams.offline.report import (
    RecallReport,
    RecallRow,
    ReportData,
    RetentionCohort,
    RetentionReport,
    RfmReport,
    render_report,
)
from streams.offline.riskmodel import CoreRisk


def _day(day: int) -> str:
    return (datetime(1970, 1, 1, tzinfo=UTC) + timedelta(days=day)).strftime("%Y-%m-%d")


def _monday(ts: int) -> str:
    day = ts // DAY_MS
    return _day(day - (day + 3) % 7)  # 1970-01-01 was a Thursday


def recall_report(run: ReplayRun, policy: Policy, *, contacted: bool = False) -> RecallReport:
    """The recall measurement of a finished replay: tallies summed over the final states
    (what the worker's gauges and the Redis view hold), days to return from the outputs.
    `contacted`: the history comes from a system that contacted the treated group, so the
    uplift means something (the report shows it only then)."""
    by_cell = totals_of_tallies(s.recall_tally for s in run.states.values())
    rows = comparisons(by_cell, policy.tier_names)
    days: dict[str, list[float]] = {g: [] for g in Group.ALL}
    for o, _ in run.outputs:
        if o.kind == Kind.RECALL:
            days[o.payload["group"]].append(float(o.payload["days_to_return"]))
    return {
        "attribution_window_days": policy.attribution_window_days,
        "holdout_fraction": policy.holdout_fraction,
        # comparison_doc builds exactly the RecallRow shape (plain data, shared with the API).
        "rows": cast(list[RecallRow], [comparison_doc(c) for c in rows]),
        "contacted": contacted,
        "days_to_return": {
            g: {"returns": len(v), "median": round(median(v), 3) if v else None}
            for g, v in days.items()
        },
    }


def retention_report(run: ReplayRun, policy: Policy) -> RetentionReport:
    """Every cohort's row of the retention triangles (day and ISO week) as the replay left
    them, periods after the watermark's day null (streams.core.retention)."""
    today = None if run.watermark is None else run.watermark // DAY_MS
    n_days, n_weeks = policy.retention_days, policy.retention_weeks
    every = len(run.retention)  # at least as many as there are cohorts

    def rows(period: str, n: int) -> list[RetentionCohort]:
        return [
            cast(RetentionCohort, cohort_doc(r))
            for r in triangle(run.retention, period, n, every, today)
        ]

    return {"days": n_days, "weeks": n_weeks, "day": rows(DAY, n_days), "week": rows(WEEK, n_weeks)}


def rfm_report(run: ReplayRun, policy: Policy) -> RfmReport:
    """Users per RFM segment at the end of each day and at the end of the replay, and the
    segment changes emitted, per destination segment."""
    names = list(policy.rfm.segments.values())
    final = Counter(s.rfm_segment for s in run.states.values() if s.rfm_segment)
    moves = Counter(o.payload["to_segment"] or "none" for o, _ in run.outputs if o.kind == Kind.RFM)
    return {
        "window_days": policy.rfm.window_days,
        "segments": names,
        "final": {n: final[n] for n in names},
        "changes_to": dict(sorted(moves.items())),
        "daily": [
            {"day": _day(day), "segments": counts}
            for day, counts in sorted(run.rfm_populations.items())
        ],
    }


def report_data(
    run: ReplayRun,
    policy: Policy,
    *,
    source: str,
    seconds: float,
    horizon_days: float,
    baseline_days: float,
    now_ms: int,
    judge_from: int | None = None,
    contacted: bool = False,
) -> ReportData:
    """The report's data for a finished replay. Warnings and churns are judged from
    `judge_from` on (None: the whole history); with a churn model its scores are judged too."""
    outputs = [o for o, _ in run.outputs]
    weekly: dict[str, Counter[str]] = {}
    for o in outputs:
        week = weekly.setdefault(_monday(o.ts), Counter())
        if o.kind == Kind.WARNING:
            week["warnings"] += 1
        elif o.kind == Kind.TIER:
            week["tier_changes"] += 1
        elif o.kind == Kind.LIFECYCLE and o.payload.get("to_stage") == Stage.REACTIVATED:
            week["reactivations"] += 1
    end = run.watermark or 0
    return {
        "title": f"Pulse backtest of {Path(source).name}",
        "source": source,
        "generated_at": format_ts(now_ms),
        "summary": {
            "events": run.events,
            "duplicates": run.duplicates,
            "users": len(run.states),
            "dead_letters": dict(run.dead_letters),
            "outputs": {k: sum(1 for o in outputs if o.kind == k) for k in Kind.ALL},
            "first_event": format_ts(run.first_ts) if run.first_ts is not None else None,
            "last_event": format_ts(end) if run.watermark is not None else None,
            "seconds": round(seconds, 3),
        },
        "populations": [
            {"day": _day(day), "stages": counts} for day, counts in sorted(run.populations.items())
        ],
        "weekly": [
            {
                "week": w,
                "warnings": c["warnings"],
                "tier_changes": c["tier_changes"],
                "reactivations": c["reactivations"],
            }
            for w, c in sorted(weekly.items())
        ],
        "evaluation": evaluate(
            outputs,
            run.activity,
            end,
            horizon_days=horizon_days,
            baseline_days=baseline_days,
            lowest_tier=policy.tier_names[0],
            judge_from=judge_from,
            risk=CoreRisk(policy.churn_model) if policy.churn_model is not None else None,
        )
        if run.watermark is not None
        else None,
        "risk_scores": [float(o.payload["risk_score"]) for o in outputs if o.kind == Kind.WARNING],
        "tiers": list(policy.tier_names),
        "recall": recall_report(run, policy, contacted=contacted),
        "retention": retention_report(run, policy),
        "rfm": rfm_report(run, policy),
    }


def default_horizon(policy: Policy) -> float:
    """The horizon warnings are judged at: the churn model's, else `churned_after_days`."""
    model = policy.churn_model
    return model.horizon_days if model is not None else policy.churned_after_days


def run_backtest(
    path: Path,
    out_dir: Path,
    policy: Policy,
    *,
    mapping: CsvMapping | None = None,
    until_ms: int | None = None,
    horizon_days: float | None = None,
    baseline_days: float = 14,
    progress: bool = True,
    judge_from: int | None = None,
    contacted: bool = False,
) -> ReportData:
    """Replay `path`, write outputs.jsonl, summary.json and the report; return the report data.

    The churn horizon defaults to the churn model's (without one: `churned_after_days`)."""
    from tqdm import tqdm

    out_dir.mkdir(parents=True, exist_ok=True)
    now_ms = int(time.time() * 1000)
    started = time.perf_counter()
    records = read_history(path, mapping)
    bar = tqdm(records, unit=" events", disable=not progress, mininterval=0.5)
    run = replay(bar, policy, now_ms=now_ms, until=until_ms)
    bar.close()
    seconds = time.perf_counter() - started
    with (out_dir / "outputs.jsonl").open("wb") as f:
        for out, emitted in run.outputs:
            f.write(encode_output(out, emitted) + b"\n")
    data = report_data(
        run,
        policy,
        source=str(path),
        seconds=seconds,
        horizon_days=horizon_days if horizon_days is not None else default_horizon(policy),
        baseline_days=baseline_days,
        now_ms=now_ms,
        judge_from=judge_from,
        contacted=contacted,
    )
    (out_dir / "summary.json").write_bytes(msgspec.json.format(msgspec.json.encode(data)))
    render_report(data, out_dir)
    return data
