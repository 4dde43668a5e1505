"""`pulse fit`: the churn model from a history file, written as the churn model file.

A history (JSONL in the input contract, or CSV/TSV/whitespace text with a `CsvMapping`) becomes
one (x, t_x, T) summary per user, counted exactly as the engine counts them in the state:
distinct UTC days with activity (an event of a type the policy does not list as passive), up
to and including the calibration end day (see `streams.core.risk` and `streams.core.bgnbd` for
the mapping onto the paper's weeks). Users first active after the end are not in the
calibration. Records that break the input contract are skipped and counted by reason, as the
replay's dead letters are.

Fitted on the calibration period only: BG/NBD (when the history has repeat users), the
empirical curves (streams/offline/empirical.py), the stage thresholds and the warning level
(streams/offline/thresholds.py), and the RFM score boundaries (quintiles, `rfm_bounds`).
"""

from __future__ import annotations

import re
import time
from collections import Counter, defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import msgspec

from streams.core import bgnbd
from streams.core.contract import InvalidEvent, parse_event
from streams.core.eventtime import DAY_MS, day_of, format_ts, parse_ts
from streams.core.policy import ChurnModel
from streams.offline.empirical import empirical_curves
from streams.offline.evaluation import judged_silences, warning_rule_points
from streams.offline.history import CsvMapping, read_history
from streams.offline.latelook import LATE_MOMENTS_DAYS, Look, choose_look, looks
from streams.offline.riskmodel import CoreRisk
from streams.offline.thresholds import (
    LEVELS,
    LevelChoice,
    choose_level,
    choose_window,
    stage_thresholds,
    warning_windows,
)

_PLAIN_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
# History files may be decades old: the live pipeline's lower bound on event time does not apply.
_MIN_TS_MS = -(2**53)
_MAX_RECORD_BYTES = 1 << 20
# Nor does its upper bound: a history is judged by its own dates, not the wall clock.
_MAX_FUTURE_MS = 2**53
# A record as read from a history file: (key or None, value bytes).
Record = tuple[bytes | None, bytes]


@dataclass
class ActivityDays:
    """Distinct active days per user, and what was skipped on the way."""

    days: dict[str, set[int]] = field(default_factory=dict)
    # per user, (UTC day, spend cents) of each purchase (an event of a spend type)
    purchases: dict[str, list[tuple[int, int]]] = field(default_factory=dict)
    skipped: Counter[str] = field(default_factory=Counter)
    records: int = 0
    last_day: int | None = None


def parse_until(text: str) -> int:
    """The calibration cut as epoch millis (the calibration is what comes before it): RFC 3339,
    epoch millis, or a plain UTC date (its midnight).

    Raises streams.core.eventtime.TimestampError.
    """
    text = text.strip()
    return parse_ts(text + "T00:00:00Z" if _PLAIN_DATE.match(text) else text)


def activity_days(
    records: Iterable[Record],
    passive_types: Iterable[str],
    *,
    now_ms: int,
    spend_types: Iterable[str] = ("purchase",),
) -> ActivityDays:
    """Collect the distinct UTC active days of every user in `records` (events of a type not in
    `passive_types`), and their purchases (events of `spend_types`)."""
    passive, spend = frozenset(passive_types), frozenset(spend_types)
    out = ActivityDays()
    for key, value in records:
        out.records += 1
        try:
            ev = parse_event(
                value,
                key,
                now_ms=now_ms,
                min_ts_ms=_MIN_TS_MS,
                max_future_skew_ms=_MAX_FUTURE_MS,
                max_bytes=_MAX_RECORD_BYTES,
            )
        except InvalidEvent as exc:
            out.skipped[exc.reason] += 1
            continue
        if ev.type in spend:
            out.purchases.setdefault(ev.user_id, []).append((day_of(ev.ts), ev.amount_cents))
        if ev.type in passive:
            continue
        day = day_of(ev.ts)
        out.days.setdefault(ev.user_id, set()).add(day)
        out.last_day = day if out.last_day is None else max(out.last_day, day)
    return out


def summaries(collected: ActivityDays, end_day: int) -> dict[str, bgnbd.Summary]:
    """Each user's (x, t_x, T) in weeks as of the end of `end_day` (purchases after it dropped)."""
    result: dict[str, bgnbd.Summary] = {}
    for user, days in collected.days.items():
        kept = [d for d in days if d <= end_day]
        if kept:
            result[user] = bgnbd.summary_from_days(len(kept), min(kept), max(kept), end_day)
    return result


RFM_QUANTILES = (0.2, 0.4, 0.6, 0.8)


def rfm_values(
    purchases: dict[str, list[tuple[int, int]]], end_day: int, window_days: int
) -> tuple[list[int], list[int], list[float]]:
    """Per user with a purchase in the window ending `end_day`: days since their last purchase,
    their purchases and their spend (currency units), in user order."""
    first = end_day - window_days + 1
    recency: list[int] = []
    frequency: list[int] = []
    monetary: list[float] = []
    for user in sorted(purchases):
        kept = [(d, c) for d, c in purchases[user] if first <= d <= end_day]
        if kept:
            recency.append(end_day - max(d for d, _ in kept))
            frequency.append(len(kept))
            monetary.append(sum(c for _, c in kept) / 100)
    return recency, frequency, monetary


def rfm_bounds(
    purchases: dict[str, list[tuple[int, int]]], end_day: int, window_days: int
) -> dict[str, list[float]] | None:
    """The RFM score boundaries of a history: the 20th, 40th, 60th and 80th percentiles
    (numpy's default, linear interpolation) of the users' recency, frequency and monetary
    value within the window ending `end_day`; None without a purchase in it."""
    import numpy as np

    recency, frequency, monetary = rfm_values(purchases, end_day, window_days)
    if not recency:
        return None
    return {
        name: [round(float(q), 6) for q in np.quantile(values, RFM_QUANTILES)]
        for name, values in (
            ("recency_days", recency),
            ("frequency", frequency),
            ("monetary", monetary),
        )
    }


def fit_history(
    path: Path,
    *,
    until_ms: int | None = None,
    mapping: CsvMapping | None = None,
    passive_types: Iterable[str] = (),
    spend_types: Iterable[str] = ("purchase",),
    rfm_window_days: int = 365,
    horizon_days: float = 60,
    min_silence_days: float = 7,
    target_recall: float = 0.60,
    min_lead_days: float = 45,
    inner_days: int = 120,
) -> dict[str, Any]:
    """Fit the churn model to the history in `path` before `until_ms`; the model file's content.

    The calibration holds the events before `until_ms` (default: the whole file), so the same
    cut serves `pulse replay --judge-from`. Raises HistoryError, FitError, or OSError.
    """
    started = time.perf_counter()
    now_ms = int(time.time() * 1000)
    collected = activity_days(
        read_history(path, mapping), passive_types, now_ms=now_ms, spend_types=spend_types
    )
    if collected.last_day is None:
        raise bgnbd.FitError(
            f"{path}: no valid activity (every record was invalid or of a passive type)"
        )
    end_day = day_of(until_ms - 1) if until_ms is not None else collected.last_day
    stats = summaries(collected, end_day)
    if not stats:
        raise bgnbd.FitError(f"{path}: no activity before {format_ts(end_day * DAY_MS + DAY_MS)}")
    users = {u: {d for d in days if d <= end_day} for u, days in collected.days.items()}
    users = {u: days for u, days in users.items() if days}
    curves = empirical_curves(users, end_day, horizon_days)
    doc: dict[str, Any] = {
        "model": "BG/NBD",
        "unit": "weeks",
        "calibration_end": format_ts(end_day * DAY_MS)[:10],
        "horizon_days": horizon_days,
        "min_silence_days": min_silence_days,
    }
    try:
        result = bgnbd.fit(
            [s.x for s in stats.values()],
            [s.t_x for s in stats.values()],
            [s.T for s in stats.values()],
        )
    except bgnbd.FitError as exc:
        if not any(x > 0 for x in (s.x for s in stats.values())):
            raise
        # Repeat users but no finite BG/NBD maximum: the empirical curves still say something.
        doc.update(model="empirical", bgnbd_error=str(exc))
        result = None
    if result is not None:
        m = result.model
        doc.update(
            r=m.r,
            alpha=m.alpha,
            a=m.a,
            b=m.b,
            log_likelihood=result.log_likelihood,
            iterations=result.iterations,
        )
        stages = stage_thresholds(
            m, [(int(s.x), round(s.t_x * 7)) for s in stats.values()], horizon_days
        )
        doc.update(
            dormant_after_days=stages.dormant_after_days,
            churned_after_days=stages.churned_after_days,
            stage_returns={
                "dormant_within_horizon": stages.dormant_return,
                "churned_within_a_year": stages.churned_return,
            },
        )
    doc["empirical"] = curves
    bounds = rfm_bounds(collected.purchases, end_day, rfm_window_days)
    if bounds is not None:
        doc["rfm"] = bounds
    model = ChurnModel.model_validate(doc)
    choices = []
    for window in warning_windows(min_silence_days):
        candidate = model.model_copy(update=window)
        choice, table = _choose_level(
            candidate, users, end_day, horizon_days, inner_days, target_recall, min_lead_days
        )
        choices.append((window, choice, table))
    window, choice, table = choose_window(choices)
    doc.update(window)
    doc["warn_probability"] = choice.level
    moments = [at for w, _, _ in choices if (at := w["max_silence_days"]) is not None]
    best, candidates = _choose_late_look(
        model, users, end_day, horizon_days, inner_days, moments, target_recall, min_lead_days
    )
    if best is not None and best.late_days is None:
        best = None  # a single moment: the window chosen above
    if best is not None:
        # More precise than any single moment inside the calibration, with the targets met.
        doc.update(
            min_silence_days=best.moment_days,
            max_silence_days=best.moment_days,
            warn_probability=best.level,
            late_silence_days=best.late_days,
            late_warn_probability=best.late_level,
        )
    doc["warn_level_choice"] = {
        "rule": (
            f"the highest level with recall >= {target_recall} and median lead >= "
            f"{min_lead_days:g} days, judged on the last {inner_days} days of the calibration; "
            "of the warning windows, the most precise single moment that meets them (else the "
            "crossing from the minimum silence); then, if it is more precise still with the "
            "targets met, a late look: a higher level at the moment, and the users it does not "
            "warn looked at again at 21, 30 or 45 days of silence with a level of their own"
        ),
        "met": choice.met if best is None else True,
        "precision": choice.precision if best is None else best.precision,
        "recall": choice.recall if best is None else best.recall,
        "median_lead_days": choice.median_lead_days if best is None else best.median_lead_days,
        "levels": table,
        "windows": [
            {
                **w,
                "level": c.level,
                "met": c.met,
                "precision": c.precision,
                "recall": c.recall,
                "median_lead_days": c.median_lead_days,
            }
            for w, c, _ in choices
        ],
        # The most precise late look of each (moment, late moment) that meets the targets.
        "late_looks": [_look_doc(c) for c in candidates],
    }
    repeat = [s for s in stats.values() if s.x > 0]
    doc.update(
        customers=len(stats),
        repeat_customers=len(repeat),
        repeat_active_days=int(round(sum(s.x for s in repeat))),
        passive_types=sorted(passive_types),
        source=path.name,
        records=collected.records,
        skipped=dict(collected.skipped),
        seconds=round(time.perf_counter() - started, 3),
    )
    return doc


def _choose_level(
    model: ChurnModel,
    users: dict[str, set[int]],
    end_day: int,
    horizon_days: float,
    inner_days: int,
    target_recall: float,
    min_lead_days: float,
) -> tuple[LevelChoice, list[dict[str, Any]]]:
    """The warning level chosen by judging the rule inside the calibration period."""
    activity = {u: [d * DAY_MS for d in sorted(days)] for u, days in users.items()}
    end = (end_day + 1) * DAY_MS - 1
    judge_from = (end_day + 1 - inner_days) * DAY_MS
    points = warning_rule_points(
        activity,
        end,
        horizon_days=horizon_days,
        judge_from=judge_from,
        risk=CoreRisk(model),
        thresholds=LEVELS,
    )
    figures = {p["threshold"]: (p["precision"], p["recall"], p["lead_median_days"]) for p in points}
    choice = choose_level(figures, target_recall=target_recall, min_lead_days=min_lead_days)
    table = [
        {
            "level": p["threshold"],
            "warnings": p["warnings"],
            "precision": p["precision"],
            "recall": p["recall"],
            "median_lead_days": p["lead_median_days"],
        }
        for p in points
    ]
    return choice, table


def _choose_late_look(
    model: ChurnModel,
    users: dict[str, set[int]],
    end_day: int,
    horizon_days: float,
    inner_days: int,
    moments: list[float],
    target_recall: float,
    min_lead_days: float,
) -> tuple[Look | None, list[Look]]:
    """The most precise rule of the single moments and their late looks that meets the
    targets inside the calibration (judged as `_choose_level` judges), and the best of each
    (moment, late moment)."""
    if not moments:
        return None, []
    activity = {u: [d * DAY_MS for d in sorted(days)] for u, days in users.items()}
    silences = judged_silences(
        activity,
        (end_day + 1) * DAY_MS - 1,
        horizon_days=horizon_days,
        judge_from=(end_day + 1 - inner_days) * DAY_MS,
    )
    if not silences.churns:
        return None, []
    judged: list[Look] = []
    # A look is at the end of a day: at least a day within the horizon (ChurnModel's check).
    late_moments = [days for days in LATE_MOMENTS_DAYS if days + 1 <= horizon_days]
    for days in moments:
        judged += looks(model, silences, days, LEVELS, late_moments)
    groups: dict[tuple[float, float | None], list[Look]] = defaultdict(list)
    for look in judged:
        groups[(look.moment_days, look.late_days)].append(look)
    each = [choose_look(group, target_recall, min_lead_days) for group in groups.values()]
    return choose_look(judged, target_recall, min_lead_days), [c for c in each if c is not None]


def _look_doc(look: Look) -> dict[str, Any]:
    return {
        "min_silence_days": look.moment_days,
        "level": look.level,
        "late_silence_days": look.late_days,
        "late_level": look.late_level,
        "warnings": look.warnings,
        "precision": look.precision,
        "recall": look.recall,
        "median_lead_days": look.median_lead_days,
    }


def write_params(params: dict[str, Any], out: Path) -> None:
    """Write the parameters file (JSON, readable by `streams.core.policy.load_churn_model`)."""
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_bytes(msgspec.json.format(msgspec.json.encode(params)) + b"\n")


def write_policy(params: dict[str, Any], out: Path) -> None:
    """Write the proposed stage thresholds as a policy file (TOML) for review, with how they
    were chosen. Without BG/NBD there is nothing to propose: the file says so."""
    lines = [
        f"# Proposed by `pulse fit` from {params.get('source')} (calibration to "
        f"{params.get('calibration_end')}).",
        "# The churn model file carries the same values; a policy file that sets them wins.",
    ]
    if "dormant_after_days" in params:
        returns = params.get("stage_returns", {})
        lines += [
            "# dormant: repeat users silent this long come back within the horizon with "
            f"{returns.get('dormant_within_horizon')} chance (BG/NBD, calibration).",
            f"dormant_after_days = {params['dormant_after_days']}",
            "# churned: users silent this long come back within a year with "
            f"{returns.get('churned_within_a_year')} chance.",
            f"churned_after_days = {params['churned_after_days']}",
        ]
    else:
        lines.append("# No BG/NBD fit: no stage thresholds proposed (the defaults apply).")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text("\n".join(lines) + "\n", encoding="utf-8")
