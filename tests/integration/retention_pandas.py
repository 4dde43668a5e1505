"""Retention cohorts computed independently with pandas from raw events: the reference the
worker's view, the API and the replay are checked against (exact equality).

Nothing here uses streams.core.retention: cohorts, periods and ISO weeks come from pandas'
own date arithmetic, straight from the definition in docs/retention.md.
"""

from __future__ import annotations

import json
from collections import Counter
from importlib import resources
from pathlib import Path

import pandas as pd

from streams.core.contract import InvalidEvent
from streams.offline.replay import parse_record

CDNOW = Path(str(resources.files("lifetimes.datasets") / "CDNOW_sample.txt"))
CDNOW_COLUMNS = ("master_id", "user_id", "ts", "cds", "amount")
EPOCH = pd.Timestamp("1970-01-01")
MAX_DAYS, MAX_WEEKS = 30, 26  # the periods the counts keep; later activity is "later"

Cell = tuple[str, int, str]


def demo_events(records: list[tuple[bytes | None, bytes]]) -> pd.DataFrame:
    """The valid records as rows (user_id, event_id, type, date). Which records are valid is
    the input contract's business, so the contract's parser decides that; the rest is pandas
    on the raw JSON."""
    rows = []
    for key, value in records:
        try:
            ev = parse_record(key, value)
        except InvalidEvent:
            continue
        doc = json.loads(value)
        rows.append((doc["user_id"], doc["event_id"], doc["type"], ev.ts))
    frame = pd.DataFrame(rows, columns=["user_id", "event_id", "type", "ts"])
    frame["date"] = pd.to_datetime(frame["ts"], unit="ms", utc=True).dt.tz_localize(None)
    return frame


def cdnow_events(shift_days: int = 0) -> pd.DataFrame:
    """CDNOW_sample.txt as rows: every row a purchase (its own event), dates moved by
    `shift_days`."""
    tx = pd.read_csv(CDNOW, sep=r"\s+", header=None, names=list(CDNOW_COLUMNS), dtype=str)
    tx["date"] = pd.to_datetime(tx["ts"], format="%Y%m%d") + pd.Timedelta(days=shift_days)
    tx["type"] = "purchase"
    tx["event_id"] = [f"row-{i}" for i in range(len(tx))]
    return tx[["user_id", "event_id", "type", "date"]]


def retention_cells(
    events: pd.DataFrame, passive: tuple[str, ...] = ("points_earned",)
) -> Counter[Cell]:
    """(period, cohort, field) -> users, as docs/retention.md defines them: a cohort is the
    UTC day (day number since 1970-01-01) or the ISO week (numbered by its Monday's day
    number: (monday + 3) / 7) of a user's first activity; `n` its users, `a<k>` those active
    in period k after it, `s<k>` those active in period k or later (k <= 30 days, 26 weeks).
    Repeated event ids of a user count once, passive types not at all."""
    ev = events.sort_values(["date", "user_id", "event_id"], kind="stable")
    ev = ev.drop_duplicates(["user_id", "event_id"])
    ev = ev[~ev["type"].isin(passive)].copy()
    day = ev["date"].dt.floor("D")
    ev["day"] = (day - EPOCH).dt.days
    monday = day - pd.to_timedelta(day.dt.day_of_week, unit="D")  # ISO weeks begin on Monday
    ev["monday"] = (monday - EPOCH).dt.days
    first = ev.groupby("user_id")["day"].transform("min")
    first_monday = ev.groupby("user_id")["monday"].transform("min")
    out: Counter[Cell] = Counter()
    for period, cohort, k, most in (
        ("day", first, ev["day"] - first, MAX_DAYS),
        ("week", (first_monday + 3) // 7, (ev["monday"] - first_monday) // 7, MAX_WEEKS),
    ):
        frame = pd.DataFrame({"user": ev["user_id"], "cohort": cohort, "k": k})
        for c, n in frame.groupby("cohort")["user"].nunique().items():
            out[(period, int(c), "n")] = int(n)
        kept = frame[frame["k"] <= most]
        for (c, kk), n in kept.groupby(["cohort", "k"])["user"].nunique().items():
            out[(period, int(c), f"a{kk}")] = int(n)
        last = frame.groupby(["user", "cohort"])["k"].max().clip(upper=most).reset_index()
        for k_ in range(most + 1):
            for c, n in last[last["k"] >= k_].groupby("cohort")["user"].nunique().items():
                out[(period, int(c), f"s{k_}")] = int(n)
    return out
