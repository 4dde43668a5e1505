"""Recall measurement: who came back after a warning, treated against holdout, and the
uplift's interval; through the core and a replay of a scripted history."""

from __future__ import annotations

import math
from pathlib import Path

import msgspec
import pytest
from hypothesis import given
from hypothesis import strategies as st

from streams.core.checkpoints import NEVER
from streams.core.engine import apply_event, sweep
from streams.core.eventtime import DAY_MS, HOUR_MS
from streams.core.holdout import Group, assign_group
from streams.core.outputs import Kind, to_wire, warning_key
from streams.core.policy import Policy
from streams.core.recall import (
    Counts,
    Outcome,
    RecallCell,
    cell_counts,
    compare,
    totals_of_tallies,
    uplift,
    wilson,
)
from streams.core.state import UserState, decode_state, decode_summary, encode_state
from streams.local.launcher import describe
from streams.offline.backtest import recall_report, report_data
from streams.offline.replay import ReplayRun, replay
from streams.offline.report import render_report
from streams.settings import WorkerSettings
from tests.unit.pulse_testkit import PROPERTY, at, ev

BASE = 1_795_305_600_000  # 2026-11-22T00:00:00Z
POLICY = Policy()
SILENCE = "silence_exceeds_normal"

# -- the statistics ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("treated", "holdout", "expected"),
    [
        # Newcombe (1998), Statistics in Medicine 17:873-890, Table II, method 10.
        ((56, 70), (48, 80), (0.0524, 0.3339)),
        ((9, 10), (3, 10), (0.1705, 0.8090)),
        ((5, 56), (0, 29), (-0.0381, 0.1926)),
    ],
)
def test_the_uplift_interval_matches_newcombes_published_examples(
    treated: tuple[int, int], holdout: tuple[int, int], expected: tuple[float, float]
) -> None:
    a = Counts(reactivated=treated[0], not_reactivated=treated[1] - treated[0])
    b = Counts(reactivated=holdout[0], not_reactivated=holdout[1] - holdout[0])
    u = uplift(a, b)
    assert u is not None
    assert u.difference == pytest.approx(treated[0] / treated[1] - holdout[0] / holdout[1])
    assert (round(u.low, 4), round(u.high, 4)) == expected


def test_the_wilson_interval_matches_a_published_example() -> None:
    # Newcombe (1998), "Two-sided confidence intervals for the single proportion", 81/263.
    low, high = wilson(81, 263)
    assert (round(low, 4), round(high, 4)) == (0.2553, 0.3662)


def test_no_uplift_until_both_groups_have_judged_warnings() -> None:
    assert uplift(Counts(reactivated=3), Counts(open=5)) is None
    assert Counts(open=5).rate is None


@given(
    x1=st.integers(0, 500),
    n1=st.integers(1, 500),
    x2=st.integers(0, 500),
    n2=st.integers(1, 500),
)
def test_the_interval_holds_the_difference_and_stays_within_minus_one_and_one(
    x1: int, n1: int, x2: int, n2: int
) -> None:
    x1, x2 = min(x1, n1), min(x2, n2)
    u = uplift(
        Counts(reactivated=x1, not_reactivated=n1 - x1),
        Counts(reactivated=x2, not_reactivated=n2 - x2),
    )
    assert u is not None
    assert -1 <= u.low <= u.difference <= u.high <= 1
    assert math.isclose(u.difference, x1 / n1 - x2 / n2)


# -- a scripted history, replayed ----------------------------------------------------------


def ids(group: str, n: int) -> list[str]:
    """The first n user ids "u-<i>" that the default policy puts in `group`."""
    out = [f"u-{i}" for i in range(10_000) if assign_group(f"u-{i}", POLICY) == group]
    return out[:n]


def day(n: float, hour: float = 9) -> int:
    return BASE + int(n * DAY_MS) + int(hour * HOUR_MS)


def rec(user: str, n: int, ts: int, etype: str = "session_start", amount: int = 0) -> bytes:
    doc: dict[str, object] = {"event_id": f"{user}-{n}", "user_id": user, "type": etype, "ts": ts}
    if amount:
        doc["amount"] = amount
    return msgspec.json.encode(doc)


def life(user: str, start: int, back_after: int | None, silver: bool) -> list[tuple[int, bytes]]:
    """Daily visits for ten days from day `start` (so a warning three days after the last);
    back `back_after` days after the warning (None: never) and daily from then to day 59."""
    out = [(day(start + d), rec(user, d, day(start + d))) for d in range(10)]
    if silver:
        out.append((day(start, 10), rec(user, 50, day(start, 10), "purchase", 150)))
    if back_after is not None:
        for d in range(start + 12 + back_after, 60):
            out.append((day(d), rec(user, 100 + d, day(d))))
    return out


def scripted_history() -> list[tuple[bytes, bytes]]:
    """20 treated users warned on day 12: 14 back within the 14-day window (10 of them
    silver) and active since, one back after 20 days, five never; one more treated user
    warned on day 52, still open on day 60. 10 holdout users warned on day 12: 3 back within
    the window (all bronze), 7 never (2 silver)."""
    treated, holdout = ids(Group.TREATED, 21), ids(Group.HOLDOUT, 10)
    timed: list[tuple[int, bytes]] = []
    for i, user in enumerate(treated[:20]):
        back = 1 + i % 10 if i < 14 else (20 if i == 14 else None)
        timed += [(t, r) for t, r in life(user, 0, back, silver=i < 10)]
    timed += life(treated[20], 40, None, silver=False)
    for i, user in enumerate(holdout):
        timed += life(user, 0, 2 + i if i < 3 else None, silver=i >= 8)
    timed.sort(key=lambda tr: tr[0])
    return [(msgspec.json.decode(r)["user_id"].encode(), r) for _, r in timed]


UNTIL = day(60)


def test_treated_users_coming_back_more_often_give_the_expected_rates_and_uplift() -> None:
    run = replay(scripted_history(), POLICY, now_ms=UNTIL + DAY_MS, until=UNTIL)
    by_cell = totals_of_tallies(s.recall_tally for s in run.states.values())
    overall = compare(by_cell)
    assert overall.treated == Counts(open=1, reactivated=14, not_reactivated=6)
    assert overall.holdout == Counts(open=0, reactivated=3, not_reactivated=7)
    assert (overall.treated.warned, overall.treated.judged, overall.treated.rate) == (21, 20, 0.7)
    assert (overall.holdout.warned, overall.holdout.judged, overall.holdout.rate) == (10, 10, 0.3)
    assert overall.uplift is not None
    assert overall.uplift.difference == pytest.approx(0.4)
    # Newcombe's hybrid score interval, by hand: Wilson 14/20 = [0.48103, 0.85453] and
    # 3/10 = [0.10779, 0.60322]; low = 0.4 - sqrt(0.21897^2 + 0.30322^2) = 0.02598,
    # high = 0.4 + sqrt(0.15453^2 + 0.19221^2) = 0.64663.
    assert (round(overall.uplift.low, 4), round(overall.uplift.high, 4)) == (0.0260, 0.6466)

    silver = compare(by_cell, tier="silver")
    assert silver.treated == Counts(reactivated=10)
    assert silver.holdout == Counts(not_reactivated=2)
    assert silver.uplift is not None and silver.uplift.difference == pytest.approx(1.0)
    bronze = compare(by_cell, tier="bronze")
    assert bronze.treated == Counts(open=1, reactivated=4, not_reactivated=6)
    assert bronze.holdout == Counts(reactivated=3, not_reactivated=5)
    assert {r for _, _, r in by_cell} == {SILENCE}

    # Every return within the window is attributed to its warning, with the days it took.
    recalls = [o for o, _ in run.outputs if o.kind == Kind.RECALL]
    assert len(recalls) == 17
    for o in recalls:
        p = o.payload
        assert p["warning_key"] == warning_key(o.user_id, day(12))
        assert p["warned_at_ms"] == day(12) and o.ts == day(12 + p["days_to_return"])
        assert p["group"] == assign_group(o.user_id, POLICY)
        assert p["from_stage"] == "at_risk" and p["to_stage"] == "active"
    assert sorted(
        o.payload["days_to_return"] for o in recalls if o.payload["group"] == "holdout"
    ) == [
        2,
        3,
        4,
    ]
    warnings = [o for o, _ in run.outputs if o.kind == Kind.WARNING]
    assert {o.payload["group"] for o in warnings} == {Group.TREATED, Group.HOLDOUT}
    assert all(o.payload["group"] == assign_group(o.user_id, POLICY) for o in warnings)

    report = recall_report(run, POLICY)
    first = report["rows"][0]
    assert (first["tier"], first["reason"], first["uplift"]) == (
        None,
        None,
        overall.uplift.difference,
    )
    assert [(r["tier"], r["reason"]) for r in report["rows"]] == [
        (None, None),
        ("bronze", None),
        ("silver", None),
        (None, SILENCE),
        ("bronze", SILENCE),
        ("silver", SILENCE),
    ]
    assert report["days_to_return"]["holdout"] == {"returns": 3, "median": 3}


def test_a_return_after_the_window_is_not_attributed() -> None:
    run = replay(scripted_history(), POLICY, now_ms=UNTIL + DAY_MS, until=UNTIL)
    late = ids(Group.TREATED, 15)[14]
    outs = [o for o, _ in run.outputs if o.user_id == late]
    assert [o.payload["to_stage"] for o in outs if o.kind == Kind.LIFECYCLE][-1] == "active"
    assert not [o for o in outs if o.kind == Kind.RECALL]
    assert cell_counts(run.states[late].recall_tally) == {
        (Group.TREATED, "bronze", SILENCE, Outcome.NOT_REACTIVATED): 1
    }


# -- the core -------------------------------------------------------------------------------


def test_the_window_end_is_a_checkpoint_and_judges_the_warning() -> None:
    s = None
    for d in range(10):
        s = apply_event(s, ev(at(d, 9)), POLICY).state
    assert s is not None
    warned = sweep(s, at(12, 9), POLICY).state
    assert warned.recall_at == at(12, 9) and warned.stage == "at_risk"
    end = at(12, 9) + 14 * DAY_MS
    assert warned.next_check <= end
    before = sweep(warned, end - 1, POLICY).state
    assert before.recall_at == at(12, 9)
    after = sweep(before, end, POLICY).state
    assert after.recall_at is None
    assert after.recall_tally == (
        RecallCell(assign_group("u1", POLICY), "bronze", SILENCE, warned=1, not_reactivated=1),
    )


def test_states_written_before_the_recall_fields_still_decode() -> None:
    s = apply_event(None, ev(at(0)), POLICY).state
    fields = msgspec.structs.asdict(s)
    old = list(fields.values())[: list(fields).index("format") + 1]
    back = decode_state(msgspec.msgpack.encode(old))
    assert back.recall_at is None and back.recall_tally == ()
    assert decode_summary(msgspec.msgpack.encode(old)).recall_tally == ()
    assert decode_state(encode_state(s)) == s


@PROPERTY
@given(
    gaps=st.lists(st.floats(0.05, 25), min_size=1, max_size=40),
    fraction=st.sampled_from([0.0, 0.5, 0.9]),
)
def test_every_warning_is_counted_once_and_judged_once_its_window_ends(
    gaps: list[float], fraction: float
) -> None:
    policy = Policy(holdout_fraction=fraction)
    state: UserState | None = None
    outs = []
    t = at(0, 9)
    for i, gap in enumerate(gaps):
        r = apply_event(state, ev(t, event_id=f"e{i}"), policy)
        state, outs = r.state, outs + list(r.outputs)
        t += int(gap * DAY_MS)
    assert state is not None
    open_ = sum(c.open for c in state.recall_tally)
    assert open_ == (1 if state.recall_at is not None else 0)
    end = sweep(state, t + 200 * DAY_MS, policy)
    state, outs = end.state, outs + list(end.outputs)
    warnings = [o for o in outs if o.kind == Kind.WARNING]
    recalls = [o for o in outs if o.kind == Kind.RECALL]
    cells = state.recall_tally
    assert sum(c.warned for c in cells) == len(warnings)
    assert sum(c.open for c in cells) == 0 and state.recall_at is None
    assert sum(c.reactivated for c in cells) == len(recalls)
    group = assign_group("u1", policy)
    assert {c.group for c in cells} <= {group}
    assert {w.payload["group"] for w in warnings} <= {group}
    keys = {w.idempotency_key for w in warnings}
    for o in recalls:
        assert o.payload["warning_key"] in keys
        assert 0 < o.payload["days_to_return"] < policy.attribution_window_days
    assert state.next_check == NEVER or state.next_check > state.evaluated_at


def test_the_report_answers_did_the_recall_work(tmp_path: Path) -> None:
    run = replay(scripted_history(), POLICY, now_ms=UNTIL + DAY_MS, until=UNTIL)
    data = report_data(
        run,
        POLICY,
        source="scripted.jsonl",
        seconds=0.1,
        horizon_days=14,
        baseline_days=14,
        now_ms=UNTIL,
        contacted=True,  # the scripted history stands for one whose treated users were contacted
    )
    page = render_report(data, tmp_path).read_text()
    section = page[page.index("<h2>Did the recall work?</h2>") :]
    first_row = section[section.index("<td>all</td><td>all</td>") :].split("</tr>")[0]
    cells = [c.split("<")[0] for c in first_row.split('class="num">')[1:]]
    # treated: warned, open, judged, reactivated, rate; holdout the same; uplift; interval
    assert cells == [
        "21", "1", "20", "14", "70.0%", "10", "0", "10", "3", "30.0%", "+40.0", "+2.6 to +64.7"
    ]  # fmt: skip
    assert "holdout: 3 returns, median 3 days" in section


def test_the_live_feed_of_pulse_run_shows_returns_and_holdout_warnings() -> None:
    settings = WorkerSettings()
    recall = next(o for o, _ in _scripted_run().outputs if o.kind == Kind.RECALL)
    line = describe(settings.lifecycle_topic, to_wire(recall, recall.ts), settings)
    assert line is not None and "back" in line and "after the warning" in line
    warning = next(
        o
        for o, _ in _scripted_run().outputs
        if o.kind == Kind.WARNING and o.payload["group"] == Group.HOLDOUT
    )
    line = describe(settings.warnings_topic, to_wire(warning, warning.ts), settings)
    assert line is not None and "holdout: not contacted" in line


def _scripted_run() -> ReplayRun:
    return replay(scripted_history(), POLICY, now_ms=UNTIL + DAY_MS, until=UNTIL)
