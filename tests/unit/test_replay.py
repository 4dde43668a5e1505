"""Replay: the pure core over a file in event time, timers firing as the watermark passes."""

from __future__ import annotations

from pathlib import Path

import msgspec

from streams.core.contract import Event
from streams.core.engine import apply_event, sweep
from streams.core.eventtime import DAY_MS
from streams.core.outputs import Kind
from streams.core.policy import Policy
from streams.offline.history import CsvMapping, read_history
from streams.offline.replay import replay

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


def test_bad_and_duplicate_records_are_counted_not_applied() -> None:
    records = [
        rec("a", "ann", "page_view", BASE),
        rec("a", "ann", "page_view", BASE),
        (b"x", b"{nope"),
        rec("old", "ann", "page_view", BASE - 10 * DAY_MS),
    ]
    run = replay(records, POLICY, now_ms=NOW)
    assert run.events == 1 and run.duplicates == 1
    assert run.dead_letters == {"invalid_json": 1, "too_late": 1}


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
    assert msgspec.json.decode(records[0][1])["event_id"] == "orders.csv:2"
