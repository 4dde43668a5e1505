"""Retention cohorts of `pulse replay` against an independent pandas computation from the raw
events: the demo history and the CDNOW sample (purchases as activity), exactly."""

from __future__ import annotations

from pathlib import Path

from streams.core.eventtime import DAY_MS
from streams.core.policy import Policy
from streams.local.demo import build_schedule
from streams.offline.backtest import retention_report
from streams.offline.history import CsvMapping, read_history
from streams.offline.replay import replay
from tests.integration.retention_pandas import (
    CDNOW,
    CDNOW_COLUMNS,
    cdnow_events,
    demo_events,
    retention_cells,
)

BASE = 1_795_305_600_000  # 2026-11-22T00:00:00Z
CDNOW_MAPPING = CsvMapping(
    user="user_id", time="ts", amount="amount", type="", event_id="",
    delimiter="whitespace", columns=CDNOW_COLUMNS,
)  # fmt: skip


def test_replay_of_the_demo_counts_the_cohorts_pandas_counts() -> None:
    schedule = build_schedule(60, 11, BASE - 80 * DAY_MS)
    records = [(uid.encode(), payload) for _, uid, payload in schedule]
    run = replay(records, Policy())
    want = retention_cells(demo_events(records))
    assert +run.retention == want
    weeks = {c for p, c, _ in want if p == "week"}
    assert len(weeks) > 3 and run.dead_letters and run.duplicates


def test_replay_of_cdnow_counts_the_cohorts_pandas_counts(tmp_path: Path) -> None:
    run = replay(read_history(CDNOW, CDNOW_MAPPING), Policy())
    want = retention_cells(cdnow_events())
    assert +run.retention == want
    assert sum(n for (p, _, f), n in want.items() if p == "day" and f == "n") == 2357
    # The report's rows are those counts: the 13 ISO weeks of Q1 1997, every period reached.
    weeks = retention_report(run, Policy())["week"]
    assert [w["cohort"] for w in weeks] == [f"1997-W{w:02d}" for w in range(1, 14)]
    first = weeks[0]
    week = (9862 + 3) // 7  # 1997-01-01 is day 9862, in the week of Monday 1996-12-30
    assert first["start"] == "1996-12-30" and first["size"] == want[("week", week, "n")]
    assert first["active"] == [want.get(("week", week, f"a{k}"), 0) for k in range(27)]
    assert first["still_active"][26] == want[("week", week, "s26")] > 0
