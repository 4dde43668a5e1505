"""`pulse fit`: BG/NBD parameters from a history file, written as the churn model file.

A history (JSONL in the input contract, or CSV/TSV/whitespace text with a `CsvMapping`) becomes
one (x, t_x, T) summary per customer, counted exactly as the engine counts them in the state:
distinct UTC days with a purchase-type event, up to and including the calibration end day
(see `streams.core.bgnbd` for the mapping onto the paper's weeks). Customers whose first purchase
falls after the end are not in the calibration. Records that break the input contract are
skipped and counted by reason, as the replay's dead letters are.
"""

from __future__ import annotations

import re
import time
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import msgspec

from streams.core import bgnbd
from streams.core.contract import InvalidEvent, parse_event
from streams.core.eventtime import DAY_MS, day_of, format_ts, parse_ts
from streams.offline.history import CsvMapping, read_history

_PLAIN_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
# History files may be decades old: the live pipeline's lower bound on event time does not apply.
_MIN_TS_MS = -(2**53)
_MAX_RECORD_BYTES = 1 << 20
# A record as read from a history file: (key or None, value bytes).
Record = tuple[bytes | None, bytes]


@dataclass
class PurchaseDays:
    """Distinct purchase days per user, and what was skipped on the way."""

    days: dict[str, set[int]] = field(default_factory=dict)
    skipped: Counter[str] = field(default_factory=Counter)
    records: int = 0
    last_day: int | None = None


def parse_until(text: str) -> int:
    """The calibration end as epoch millis: RFC 3339, epoch millis, or a plain UTC date.

    Raises streams.core.eventtime.TimestampError.
    """
    text = text.strip()
    return parse_ts(text + "T00:00:00Z" if _PLAIN_DATE.match(text) else text)


def purchase_days(
    records: Iterable[Record], purchase_types: Iterable[str], *, now_ms: int
) -> PurchaseDays:
    """Collect the distinct UTC purchase days of every user in `records`."""
    types = frozenset(purchase_types)
    out = PurchaseDays()
    for key, value in records:
        out.records += 1
        try:
            ev = parse_event(
                value,
                key,
                now_ms=now_ms,
                min_ts_ms=_MIN_TS_MS,
                max_future_skew_ms=0,
                max_bytes=_MAX_RECORD_BYTES,
            )
        except InvalidEvent as exc:
            out.skipped[exc.reason] += 1
            continue
        if ev.type not in types:
            continue
        day = day_of(ev.ts)
        out.days.setdefault(ev.user_id, set()).add(day)
        out.last_day = day if out.last_day is None else max(out.last_day, day)
    return out


def summaries(collected: PurchaseDays, end_day: int) -> dict[str, bgnbd.Summary]:
    """Each user's (x, t_x, T) in weeks as of the end of `end_day` (purchases after it dropped)."""
    result: dict[str, bgnbd.Summary] = {}
    for user, days in collected.days.items():
        kept = [d for d in days if d <= end_day]
        if kept:
            result[user] = bgnbd.summary_from_days(len(kept), min(kept), max(kept), end_day)
    return result


def fit_history(
    path: Path,
    *,
    until_ms: int | None = None,
    mapping: CsvMapping | None = None,
    purchase_types: Iterable[str] = ("purchase",),
) -> dict[str, Any]:
    """Fit the BG/NBD to the history in `path`; the parameters file's content.

    `until_ms` ends the calibration with the UTC day that holds it (default: the last purchase
    day in the file). Raises HistoryError, FitError, or OSError.
    """
    started = time.perf_counter()
    types = tuple(purchase_types)
    now_ms = int(time.time() * 1000)
    collected = purchase_days(read_history(path, mapping), types, now_ms=now_ms)
    if collected.last_day is None:
        raise bgnbd.FitError(
            f"{path}: no valid events of type {', '.join(types)} (check --default-type or the "
            "type column)"
        )
    end_day = day_of(until_ms) if until_ms is not None else collected.last_day
    stats = summaries(collected, end_day)
    if not stats:
        raise bgnbd.FitError(f"{path}: no purchases on or before {format_ts(end_day * DAY_MS)}")
    result = bgnbd.fit(
        [s.x for s in stats.values()],
        [s.t_x for s in stats.values()],
        [s.T for s in stats.values()],
    )
    m = result.model
    return {
        "model": "BG/NBD",
        "r": m.r,
        "alpha": m.alpha,
        "a": m.a,
        "b": m.b,
        "unit": "weeks",
        "calibration_end": format_ts(end_day * DAY_MS)[:10],
        "customers": result.customers,
        "repeat_customers": result.repeat_customers,
        "repeat_purchases": result.repeat_purchases,
        "log_likelihood": result.log_likelihood,
        "purchase_types": list(types),
        "source": path.name,
        "records": collected.records,
        "skipped": dict(collected.skipped),
        "iterations": result.iterations,
        "seconds": round(time.perf_counter() - started, 3),
    }


def write_params(params: dict[str, Any], out: Path) -> None:
    """Write the parameters file (JSON, readable by `streams.core.policy.load_churn_model`)."""
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_bytes(msgspec.json.format(msgspec.json.encode(params)) + b"\n")
