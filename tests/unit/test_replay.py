"""Replay: the pure core over a file in event time, timers firing as the watermark passes."""

from __future__ import annotations

import random
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path

import msgspec
import pytest
from hypothesis import given
from hypothesis import strategies as st

from streams.core.contract import Event, InvalidEvent
from streams.core.engine import apply_event, sweep
from streams.core.eventtime import DAY_MS, TimestampError, parse_ts
from streams.core.outputs import Kind, encode_output
from streams.core.policy import Policy
from streams.core.state import encode_state
from streams.offline.history import CsvMapping, read_history
from streams.offline.replay import (
    MAX_REJECTED_FRACTION,
    MAX_REPLAY_TS_MS,
    Record,
    Replayer,
    ReplayRefused,
    ReplayRun,
    ensure_usable,
    parse_record,
    replay,
)

from .pulse_testkit import PROPERTY

BASE = 1_767_225_600_000  # 2026-01-01T00:00:00Z
NOW = BASE + 400 * DAY_MS
POLICY = Policy()


def rec(
    eid: str, user: str, etype: str, ts: int, amount: float | None = None
) -> tuple[bytes, bytes]:
    doc: dict[str, object] = {"event_id": eid, "user_id": user, "type": etype, "ts": ts}
    if amount is not None:
        doc["amount"] = amount
    return user.encode(), msgspec.json.encode(doc)


def test_a_silent_user_is_warned_as_other_users_events_move_the_watermark() -> None:
    records = [rec(f"a{i}", "ann", "session_start", BASE + i * DAY_MS) for i in range(10)]
    # Only bob's traffic moves event time on after ann's last visit.
    records += [rec(f"b{i}", "bob", "page_view", BASE + (10 + i) * DAY_MS) for i in range(10)]
    run = replay(records, POLICY, now_ms=NOW)
    warnings = [(o.user_id, o.ts) for o, _ in run.outputs if o.kind == Kind.WARNING]
    assert warnings == [("ann", BASE + 9 * DAY_MS + 3 * DAY_MS)]
    # emitted at the watermark that made it due: the first of bob's events past it
    emitted = next(e for o, e in run.outputs if o.kind == Kind.WARNING)
    assert emitted == BASE + 12 * DAY_MS
    assert run.events == 20
    assert run.populations[(BASE + 15 * DAY_MS) // DAY_MS]["at_risk"] == 1


def test_replay_emits_what_the_core_emits_with_fine_grained_ticks() -> None:
    records = [rec(f"a{i}", "ann", "session_start", BASE + i * 2 * DAY_MS) for i in range(8)]
    records += [rec("p1", "ann", "purchase", BASE + 30 * DAY_MS, 600)]
    records += [rec(f"z{i}", "zed", "page_view", BASE + i * DAY_MS) for i in range(0, 120, 5)]
    run = replay(sorted(records, key=lambda r: msgspec.json.decode(r[1])["ts"]), POLICY, now_ms=NOW)
    # The same events through the core directly, swept every hour of event time.
    states: dict[str, object] = {}
    keys = []
    events = sorted((msgspec.json.decode(v) for _, v in records), key=lambda d: d["ts"])
    clock = BASE
    for d in events:
        while clock + 3_600_000 <= d["ts"]:
            clock += 3_600_000
            for u in list(states):
                r = sweep(states[u], clock, POLICY)  # type: ignore[arg-type]
                states[u] = r.state
                keys += [o.idempotency_key for o in r.outputs]
        ev = Event(
            d["event_id"],
            d["user_id"],
            d["type"],
            d["ts"],
            int(d.get("amount", 0) * 100),
            "amount" in d,
        )
        r = apply_event(states.get(d["user_id"]), ev, POLICY)  # type: ignore[arg-type]
        states[d["user_id"]] = r.state
        keys += [o.idempotency_key for o in r.outputs]
    by_user = lambda ks: sorted(ks)  # noqa: E731 - order across users may interleave
    assert by_user([o.idempotency_key for o, _ in run.outputs]) == by_user(keys)


def test_bad_and_duplicate_records_are_counted_and_an_older_record_is_applied_in_event_time() -> (
    None
):
    records = [
        rec("a", "ann", "page_view", BASE),
        rec("a", "ann", "page_view", BASE),
        (b"x", b"{nope"),
        # Listed last but ten days older: the replay sorts by event time, so it is not too late.
        rec("old", "ann", "page_view", BASE - 10 * DAY_MS),
    ]
    run = replay(records, POLICY, now_ms=NOW)
    assert run.events == 2 and run.duplicates == 1
    assert run.dead_letters == {"invalid_json": 1}
    assert run.states["ann"].first_seen == BASE - 10 * DAY_MS


def test_until_lets_the_timers_run_past_the_last_event() -> None:
    run = replay(
        [rec("a", "ann", "session_start", BASE)], POLICY, now_ms=NOW, until=BASE + 70 * DAY_MS
    )
    stages = [o.payload["to_stage"] for o, _ in run.outputs if o.kind == Kind.LIFECYCLE]
    assert stages == ["new", "at_risk", "dormant", "churned"]


def test_csv_with_a_column_mapping(tmp_path: Path) -> None:
    path = tmp_path / "orders.csv"
    path.write_text("customer,date,total\nc1,2026-01-01,120.50\nc1,2026-01-03,400\nc2,20260102,5\n")
    records = list(
        read_history(
            path, CsvMapping(user="customer", time="date", amount="total", type="", event_id="")
        )
    )
    run = replay(records, POLICY, now_ms=NOW)
    assert run.events == 3
    assert run.states["c1"].total_spend_cents == 52050
    assert run.states["c1"].tier == "gold"
    assert msgspec.json.decode(records[0][1])["event_id"].startswith("row-")


def test_csv_rows_without_ids_get_ids_from_their_content_not_their_position(
    tmp_path: Path,
) -> None:
    rows = ["c1,2026-01-01,10", "c1,2026-01-01,10", "c1,2026-01-01,12", "c2,2026-01-01,10"]
    mapping = CsvMapping(user="customer", time="date", amount="total", type="", event_id="")
    ids = []
    for name, order in (("a.csv", rows), ("b.csv", rows[::-1])):
        path = tmp_path / name
        path.write_text("customer,date,total\n" + "\n".join(order) + "\n")
        ids.append(
            sorted(msgspec.json.decode(v)["event_id"] for _, v in read_history(path, mapping))
        )
    assert ids[0] == ids[1]
    # Two equal rows are two purchases on one day, not a resent record.
    assert len(set(ids[0])) == 4 and sum(i.endswith(":2") for i in ids[0]) == 1
    run = replay(read_history(tmp_path / "a.csv", mapping), POLICY)
    assert (run.events, run.duplicates) == (4, 0)


# -- order independence (issue 16) -------------------------------------------------------------

SAMPLE = Path(__file__).parents[1] / "data" / "sample-events.jsonl"
CDNOW_COLUMNS = ("master_id", "user_id", "ts", "cds", "amount")


def fingerprint(run: ReplayRun) -> tuple[bytes, bytes, dict[str, int], int, int]:
    """What must not depend on record order: the outputs as written, every final state,
    the dead letters by reason and the event and duplicate counts."""
    outputs = b"".join(encode_output(o, emitted) + b"\n" for o, emitted in run.outputs)
    states = b"".join(u.encode() + encode_state(run.states[u]) + b"\n" for u in sorted(run.states))
    return outputs, states, dict(run.dead_letters), run.events, run.duplicates


def user_of(record: Record) -> str:
    try:
        user = msgspec.json.decode(record[1]).get("user_id")
    except (msgspec.DecodeError, AttributeError):
        return ""
    return user if isinstance(user, str) else ""


def parses(record: Record) -> bool:
    try:
        parse_record(*record)
    except InvalidEvent:
        return False
    return True


def ts_of(record: Record) -> int:
    try:
        return parse_ts(msgspec.json.decode(record[1])["ts"])
    except (msgspec.DecodeError, KeyError, TypeError, TimestampError):
        return 0


def orders(records: list[Record]) -> dict[str, list[Record]]:
    """The same records as files list them: as given, by time, by customer, shuffled, reversed."""
    shuffled = {}
    for seed in (1, 2, 3):
        copy = list(records)
        random.Random(seed).shuffle(copy)
        shuffled[f"shuffled-{seed}"] = copy
    return {
        "as given": records,
        "time-sorted": sorted(records, key=ts_of),
        "customer-ordered": sorted(records, key=user_of),
        "reversed": records[::-1],
        **shuffled,
    }


@pytest.fixture(scope="module")
def sample() -> list[Record]:
    return list(read_history(SAMPLE))


@pytest.fixture(scope="module")
def cdnow_like(tmp_path_factory: pytest.TempPathFactory) -> list[Record]:
    """A CDNOW-like purchase history: 1997 dates, whitespace columns without a header, the
    file in customer order, several customers buying on the same days."""
    rng = random.Random(1997)
    lines = []
    for customer in range(1, 61):
        day = rng.randint(0, 80)
        for _ in range(rng.randint(1, 8)):
            stamp = datetime(1997, 1, 1, tzinfo=UTC) + timedelta(days=day)
            date = int(stamp.strftime("%Y%m%d"))
            amount = rng.choice((9.99, 14.5, 29.97, 60.0, 120.33))
            lines.append(f"{customer:05d} {customer:05d} {date} {rng.randint(1, 4)} {amount}")
            day += rng.randint(1, 90)
    path = tmp_path_factory.mktemp("cdnow") / "cdnow-like.txt"
    path.write_text("\n".join(lines) + "\n")
    mapping = CsvMapping(delimiter="whitespace", columns=CDNOW_COLUMNS)
    return list(read_history(path, mapping))


def test_the_sample_gives_the_same_outputs_and_states_in_any_record_order(
    sample: list[Record],
) -> None:
    runs = {name: fingerprint(replay(rs, POLICY)) for name, rs in orders(sample).items()}
    first = runs["time-sorted"]
    assert len(first[0].splitlines()) > 100 and first[2] and first[4]  # bad and duplicate records
    for name, got in runs.items():
        assert got == first, name


def test_a_customer_ordered_1997_purchase_history_replays_as_if_sorted_under_the_default_policy(
    cdnow_like: list[Record],
) -> None:
    until = parse_ts("1998-06-30T00:00:00Z")
    runs = {name: replay(rs, Policy(), until=until) for name, rs in orders(cdnow_like).items()}
    first = runs["time-sorted"]
    # 1997 is before the live floor (2000-01-01) and the bound on future skew is the wall
    # clock's: neither applies to a history.
    assert first.dead_letters == {}
    assert first.events == len(cdnow_like)
    kinds = Counter(o.kind for o, _ in first.outputs)
    assert kinds[Kind.WARNING] > 0 and kinds[Kind.TIER] > 0
    for name, run in runs.items():
        assert fingerprint(run) == fingerprint(first), name


def test_time_sorted_input_is_fed_to_the_core_unchanged(cdnow_like: list[Record]) -> None:
    records = sorted(cdnow_like, key=lambda r: (ts_of(r), user_of(r)))
    replayer = Replayer(Policy())
    for offset, (key, value) in enumerate(records):
        replayer.feed(key, value, offset)
    assert fingerprint(replay(records, Policy())) == fingerprint(replayer.finish())


def test_the_external_sort_gives_the_in_memory_run_and_removes_its_files(
    sample: list[Record], tmp_path: Path
) -> None:
    in_memory = fingerprint(replay(sample, POLICY))
    shuffled = list(sample)
    random.Random(5).shuffle(shuffled)
    external = replay(shuffled, POLICY, run_records=97, tmp_dir=tmp_path)
    assert fingerprint(external) == in_memory
    assert list(tmp_path.iterdir()) == []


def test_a_duplicate_event_id_counts_once_wherever_its_copies_stand() -> None:
    first = rec("e1", "ann", "purchase", BASE, 10)
    again = rec("e1", "ann", "purchase", BASE + DAY_MS, 10)  # a retry stamped later
    others = [rec(f"o{i}", "ann", "page_view", BASE + i * 3_600_000) for i in range(1, 40)]
    results = []
    for cut in (0, 10, 39):
        for a, b in ((first, again), (again, first)):
            records = [a, *others[:cut], b, *others[cut:]]
            run = replay(records, POLICY)
            assert (run.events, run.duplicates, dict(run.dead_letters)) == (40, 1, {})
            results.append(fingerprint(run))
    assert all(r == results[0] for r in results)


def test_unparseable_records_are_dead_letters_whatever_their_position(
    sample: list[Record],
) -> None:
    valid = [r for r in sample if parses(r)][:600]
    bad: list[Record] = [(None, b"{cut off"), (b"bob", b"[1]"), (None, b'{"user_id":"x"}')]
    base = fingerprint(replay(valid, POLICY))
    for seed in (1, 2, 3):
        records = list(valid)
        rng = random.Random(seed)
        for b in bad:
            records.insert(rng.randrange(len(records) + 1), b)
        got = fingerprint(replay(records, POLICY))
        assert got[:2] == base[:2]  # the valid records decide exactly as without the bad ones
        assert got[2] == {"invalid_json": 1, "not_an_object": 1, "missing_field": 1}


@st.composite
def histories(draw: st.DrawFn) -> list[Record]:
    """A few users' events over two months, with repeated event ids, identical records,
    records of one user at one millisecond, and records that do not parse."""
    out: list[Record] = []
    for i in range(draw(st.integers(1, 25))):
        user = draw(st.sampled_from(("ann", "bob", "cy")))
        etype = draw(st.sampled_from(("page_view", "session_start", "purchase", "email_open")))
        ts = BASE + draw(st.integers(0, 60)) * DAY_MS + draw(st.sampled_from((0, 1, 3_600_000)))
        eid = draw(st.sampled_from((f"e{i}", "same", "again")))
        out.append(rec(eid, user, etype, ts, 25.0 if etype == "purchase" else None))
    out += [(None, b"not json")] * draw(st.integers(0, 2))
    return out


@PROPERTY
@given(records=histories(), shuffled=st.randoms(use_true_random=False))
def test_a_history_replays_identically_in_any_order(
    records: list[Record], shuffled: random.Random
) -> None:
    permuted = list(records)
    shuffled.shuffle(permuted)
    until = BASE + 120 * DAY_MS
    expected = replay(records, POLICY, until=until)
    assert fingerprint(replay(permuted, POLICY, until=until)) == fingerprint(expected)
    assert fingerprint(replay(permuted, POLICY, until=until, run_records=2)) == fingerprint(
        expected
    )
    # Nothing valid is lost: every record is an event, a duplicate or a dead letter.
    assert expected.events + expected.duplicates + sum(expected.dead_letters.values()) == len(
        records
    )


def test_event_times_outside_the_live_bounds_are_accepted_up_to_the_calendars_end() -> None:
    records = [
        rec("a", "ann", "page_view", parse_ts("1970-01-01T00:00:00Z") - DAY_MS),  # before epoch
        rec("b", "ann", "page_view", parse_ts("1997-03-01T00:00:00Z")),
        rec("c", "bob", "page_view", parse_ts("2100-01-01T00:00:00Z")),  # far past the wall clock
        rec("d", "cy", "page_view", MAX_REPLAY_TS_MS + 1),  # no calendar date
    ]
    run = replay(records, POLICY)
    assert run.events == 3
    assert run.dead_letters == {"timestamp_out_of_range": 1}


def test_a_run_is_refused_when_empty_or_when_most_records_are_rejected() -> None:
    ensure_usable(5, 0, {"invalid_json": 5})  # half: still a usable history
    ensure_usable(1, 3, {"invalid_json": 4})  # duplicates were read correctly
    with pytest.raises(ReplayRefused) as empty:
        ensure_usable(0, 0, {})
    assert empty.value.code == "empty_history"
    with pytest.raises(ReplayRefused) as mostly:
        ensure_usable(2, 0, {"wrong_type": 7, "invalid_json": 1})
    assert mostly.value.code == "mostly_rejected"
    assert "8 of 10 records (80%)" in str(mostly.value)
    assert "wrong_type 7, invalid_json 1" in str(mostly.value)
    assert MAX_REJECTED_FRACTION == 0.5
