"""The demo generator: a deterministic, realistic mix that makes every decision of Pulse visible.

build_schedule is checked without a broker (shape, determinism, the mix of personas, the share
of bad records) and by feeding it through the pure core, which must then produce stage changes,
churn warnings and tier upgrades. endless_schedule (what `pulse run` publishes) must keep that
up for as long as the demo runs, at a bounded rate. run_demo is checked against a stand-in
producer on a very fast virtual clock: it must never send an event ahead of that clock.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import time
from collections import Counter
from collections.abc import Iterable
from functools import cache
from typing import Any

import pytest

from streams.core.contract import Event, InvalidEvent, Reason, parse_event
from streams.core.engine import Status, apply_event, sweep
from streams.core.eventtime import DAY_MS, HOUR_MS, virtual_now
from streams.core.lifecycle import Stage
from streams.core.outputs import Kind, Output
from streams.core.policy import Policy
from streams.core.state import UserState
from streams.local import demo
from streams.local.demo import (
    DEMO_DAYS,
    PERSONAS,
    build_schedule,
    endless_schedule,
    run_demo,
)

START = 1_795_305_600_000 + 7 * HOUR_MS + 12_345  # 2026-11-22T07:00:12.345Z, not a midnight
END = START + DEMO_DAYS * DAY_MS
POLICY = Policy()
USERS = 60
Schedule = list[tuple[int, str, bytes]]


@cache
def schedule(users: int = USERS, seed: int = 7) -> Schedule:
    return build_schedule(users, seed, START)


def persona(user_id: str) -> str:
    return user_id.rsplit("-", 1)[0]


def parse(payload: bytes, user_id: str, sent_at: int) -> Event:
    """parse_event as the worker runs it when the record arrives at its virtual send time, with
    no tolerance for the future: the demo must never need any."""
    return parse_event(
        payload,
        user_id.encode(),
        now_ms=sent_at,
        min_ts_ms=POLICY.min_valid_ts_ms,
        max_future_skew_ms=0,
        max_bytes=65_536,
    )


def parsed(items: Schedule) -> tuple[list[tuple[int, Event]], Counter[str]]:
    """(send time, event) for the records that parse, and the rejection reasons of the rest."""
    good: list[tuple[int, Event]] = []
    rejected: Counter[str] = Counter()
    for sent_at, user_id, payload in items:
        try:
            good.append((sent_at, parse(payload, user_id, sent_at)))
        except InvalidEvent as exc:
            rejected[exc.reason] += 1
    return good, rejected


# -- the plan ----------------------------------------------------------------------------------


def test_the_schedule_is_deterministic_for_a_seed() -> None:
    assert build_schedule(USERS, 7, START) == schedule()
    assert build_schedule(USERS, 8, START) != schedule()
    shifted = build_schedule(USERS, 7, START + DAY_MS)
    assert [(t - DAY_MS, u) for t, u, _ in shifted] == [(t, u) for t, u, _ in schedule()]


def test_the_schedule_is_sorted_and_spans_about_sixty_days_from_the_start() -> None:
    times = [t for t, _, _ in schedule()]
    assert times == sorted(times)
    assert times[0] >= START
    assert times[-1] < END + DAY_MS  # the last evening's session may run past midnight
    assert times[-1] > START + (DEMO_DAYS - 2) * DAY_MS


@pytest.mark.parametrize("users", [5, 13, USERS, 200])
def test_every_persona_is_present_and_ids_are_unique_per_user(users: int) -> None:
    items = schedule(users)
    user_ids = {u for _, u, _ in items}
    assert len(user_ids) == users
    assert {persona(u) for u in user_ids} == set(PERSONAS)


def test_the_mix_follows_the_intended_shares() -> None:
    per_persona = Counter(persona(u) for u in {u for _, u, _ in schedule(200)})
    assert per_persona == {
        "loyal": 70,
        "declining": 40,
        "churning": 30,
        "big_spender": 20,
        "newcomer": 40,
    }


def test_events_carry_their_event_time_and_are_never_ahead_of_the_clock() -> None:
    good, _ = parsed(schedule())
    first_copy: dict[str, int] = {}
    for sent_at, event in good:
        assert event.ts <= sent_at  # parse() allows no future skew, so this also held there
        if event.event_id in first_copy:  # a re-sent duplicate keeps the original time
            assert event.ts == first_copy[event.event_id] < sent_at
        else:
            assert event.ts == sent_at
            first_copy[event.event_id] = event.ts
    for _, _, payload in schedule():
        try:
            doc = json.loads(payload)
        except ValueError:
            continue
        assert isinstance(doc.get("ts"), int)  # epoch millis, as the brief of the demo says


def test_most_records_parse_and_a_small_share_is_malformed() -> None:
    items = schedule(200)
    good, rejected = parsed(items)
    malformed = sum(rejected.values())
    assert len(good) + malformed == len(items)
    assert 0.003 < malformed / len(items) < 0.02
    # Every kind of mistake the demo makes is in there, and nothing else.
    assert set(rejected) == {Reason.INVALID_JSON, Reason.MISSING_FIELD, Reason.INVALID_VALUE}


def test_a_small_share_are_duplicates_of_earlier_records() -> None:
    items = schedule(200)
    by_id: dict[str, list[bytes]] = {}
    for _, _, payload in items:
        try:
            event_id = json.loads(payload)["event_id"]
        except (ValueError, KeyError):
            continue
        by_id.setdefault(event_id, []).append(payload)
    repeats = {k: v for k, v in by_id.items() if len(v) > 1}
    assert 0.002 < len(repeats) / len(items) < 0.02
    assert all(len(v) == 2 and v[0] == v[1] for v in repeats.values())  # the very same bytes


def test_the_events_look_like_real_usage() -> None:
    good, _ = parsed(schedule())
    types = Counter(e.type for _, e in good)
    assert types.most_common(1)[0][0] == "page_view"
    assert {"signup", "session_start", "page_view", "purchase", "points_earned"} <= set(types)
    purchases = [e for _, e in good if e.type == "purchase"]
    assert all(e.has_amount and e.amount_cents > 0 for e in purchases)
    newcomers: dict[str, str] = {}
    for _, e in good:
        if persona(e.user_id) == "newcomer":
            newcomers.setdefault(e.user_id, e.type)
    assert set(newcomers.values()) == {"signup"}  # a newcomer's first event is the sign-up


# -- through the core --------------------------------------------------------------------------


def play(
    items: Schedule, sweeps: Iterable[int] = ()
) -> tuple[dict[str, UserState], list[Output], Counter[str]]:
    """Feed the schedule through apply_event in send order, sweeping every user at each of
    `sweeps` as it passes and at END; returns final states, outputs and statuses."""
    good, _ = parsed(items)
    states: dict[str, UserState] = {}
    outs: list[Output] = []
    statuses: Counter[str] = Counter()
    pending = sorted(sweeps)

    def sweep_all(now: int) -> None:
        for user_id, state in states.items():
            r = sweep(state, now, POLICY)
            states[user_id] = r.state
            outs.extend(r.outputs)

    for offset, (sent_at, event) in enumerate(good):
        while pending and pending[0] <= sent_at:
            sweep_all(pending.pop(0))
        r = apply_event(states.get(event.user_id), event, POLICY, 0, offset)
        states[event.user_id] = r.state
        outs.extend(r.outputs)
        statuses[r.status] += 1
    sweep_all(END)
    return states, outs, statuses


@cache
def played() -> tuple[dict[str, UserState], list[Output], Counter[str]]:
    return play(schedule())


def test_the_scenario_produces_stage_changes_warnings_and_tier_upgrades() -> None:
    _, outs, _ = played()
    kinds = Counter(o.kind for o in outs)
    assert kinds[Kind.LIFECYCLE] and kinds[Kind.WARNING] and kinds[Kind.TIER]
    stages = {o.payload["to_stage"] for o in outs if o.kind == Kind.LIFECYCLE}
    assert stages >= {
        Stage.NEW,
        Stage.ACTIVE,
        Stage.AT_RISK,
        Stage.DORMANT,
        Stage.REACTIVATED,
    }
    upgrades = {
        o.payload["to_tier"]
        for o in outs
        if o.kind == Kind.TIER and o.payload["direction"] == "upgrade"
    }
    assert upgrades == {"silver", "gold", "platinum"}


def test_each_persona_behaves_as_described() -> None:
    states, outs, _ = played()
    warned = {o.user_id for o in outs if o.kind == Kind.WARNING}
    by_persona: dict[str, list[UserState]] = {p: [] for p in PERSONAS}
    for user_id, state in states.items():
        by_persona[persona(user_id)].append(state)

    # Loyal users are active at the end; nobody loyal drifts into dormancy.
    assert all(s.stage == Stage.ACTIVE for s in by_persona["loyal"])
    # Declining users all get a churn warning and go dormant (some then come back).
    went_dormant = {
        o.user_id
        for o in outs
        if o.kind == Kind.LIFECYCLE and o.payload["to_stage"] == Stage.DORMANT
    }
    declining = by_persona["declining"]
    assert all(s.user_id in warned and s.user_id in went_dormant for s in declining)
    came_back = {
        o.user_id
        for o in outs
        if o.kind == Kind.LIFECYCLE and o.payload["to_stage"] == Stage.REACTIVATED
    }
    assert came_back and {persona(u) for u in came_back} == {"declining"}
    # Churning users are warned, then dormant.
    assert all(s.user_id in warned and s.stage == Stage.DORMANT for s in by_persona["churning"])
    # Big spenders pass the gold threshold, and some reach platinum.
    assert all(s.tier in ("gold", "platinum") for s in by_persona["big_spender"])
    assert any(s.tier == "platinum" for s in by_persona["big_spender"])
    # Newcomers start as new users.
    for s in by_persona["newcomer"]:
        first = next(o for o in outs if o.user_id == s.user_id and o.kind == Kind.LIFECYCLE)
        assert first.payload["to_stage"] == Stage.NEW


def test_duplicates_are_recognised_by_the_engine() -> None:
    _, _, statuses = played()
    items = schedule()
    ids: Counter[str] = Counter()
    for _, _, payload in items:
        try:
            ids[json.loads(payload)["event_id"]] += 1
        except (ValueError, KeyError):
            continue
    resent = sum(n - 1 for n in ids.values())
    assert resent > 0
    assert statuses[Status.DUPLICATE] == resent
    assert set(statuses) == {Status.APPLIED, Status.DUPLICATE}  # nothing too late or redelivered


def test_the_outcome_does_not_depend_on_how_often_sweeps_run() -> None:
    items = schedule(25)

    def wire(outs: list[Output]) -> list[tuple[str, int, str]]:
        return sorted((o.user_id, o.ts, o.idempotency_key) for o in outs)

    _, once, _ = play(items)
    _, daily, _ = play(items, range(START, END, DAY_MS))
    _, hourly_ish, _ = play(items, range(START, END, 7 * HOUR_MS + 1))
    assert wire(once) == wire(daily) == wire(hourly_ish)


# -- the endless demo (`pulse run`) -------------------------------------------------------------

LONG_DAYS = 300  # ten minutes and more of `pulse run` at its default rate (a day every 3 s)


@cache
def endless(users: int = USERS, seed: int = 7, days: int = LONG_DAYS) -> Schedule:
    horizon = START + days * DAY_MS
    return list(itertools.takewhile(lambda r: r[0] < horizon, endless_schedule(users, seed, START)))


def test_the_endless_demo_begins_with_the_sixty_day_plan_and_is_deterministic() -> None:
    first = set(schedule())
    assert [r for r in endless() if r in first] == schedule()  # all of it, in that order
    assert endless(days=120) == endless()[: len(endless(days=120))]
    assert endless(seed=8, days=120) != endless(days=120)
    times = [t for t, _, _ in endless()]
    assert times == sorted(times)


def test_new_users_keep_arriving_and_some_come_back() -> None:
    first_users = {u for _, u, _ in schedule()}
    late = [r for r in endless() if r[0] >= START + 200 * DAY_MS]
    assert {u for _, u, _ in late} - first_users  # users who joined after the first cohort
    # New ids go on from each persona's numbering, so the persona stays visible.
    assert {persona(u) for _, u, _ in endless()} == set(PERSONAS)
    # Someone silent for a month or more is back later.
    good, _ = parsed(endless())
    last_seen: dict[str, int] = {}
    returned = set()
    for _, event in good:
        previous = last_seen.get(event.user_id)
        if previous is not None and event.ts - previous >= 30 * DAY_MS:
            returned.add(event.user_id)
        last_seen[event.user_id] = event.ts
    assert len(returned) >= 20


def test_the_endless_demo_runs_at_a_bounded_rate_every_day() -> None:
    per_day = Counter((t - START) // DAY_MS for t, _, _ in endless())
    first_days = [per_day[d] for d in range(DEMO_DAYS)]
    later_days = [per_day[d] for d in range(DEMO_DAYS, LONG_DAYS)]
    assert min(later_days) > 0.3 * min(first_days)  # alive every single day
    assert max(later_days) < 2 * max(first_days)  # and never a flood


def test_the_endless_demo_still_shows_every_stage_change_after_ten_minutes() -> None:
    global END
    items = endless()
    saved, END = END, START + LONG_DAYS * DAY_MS
    try:
        states, outs, statuses = play(items)
    finally:
        END = saved
    assert set(statuses) == {Status.APPLIED, Status.DUPLICATE}  # never too late
    late = [o for o in outs if o.ts >= START + 200 * DAY_MS]
    assert {o.payload["to_stage"] for o in late if o.kind == Kind.LIFECYCLE} >= {
        Stage.NEW,
        Stage.ACTIVE,
        Stage.AT_RISK,
        Stage.DORMANT,
        Stage.REACTIVATED,
    }
    assert {o.kind for o in late} >= {Kind.WARNING, Kind.TIER}
    # Not everyone has churned: the page still has active users.
    assert sum(s.stage == Stage.ACTIVE for s in states.values()) >= USERS // 4


# -- run_demo against a stand-in producer -------------------------------------------------------


class FakeProducer:
    """Records what would be published, with the virtual time at the moment of sending."""

    instances: list[FakeProducer] = []
    # (event, n): set the event once n records have been sent.
    stop_at: tuple[asyncio.Event, int] | None = None

    def __init__(self, origin_ms: int, rate: float, **config: Any) -> None:
        self.origin_ms = origin_ms
        self.rate = rate
        self.config = config
        self.sent: list[tuple[str, bytes | None, bytes, int]] = []
        self.started = self.stopped = False
        FakeProducer.instances.append(self)

    async def start(self) -> None:
        self.started = True

    async def stop(self) -> None:
        self.stopped = True

    async def send(
        self, topic: str, value: bytes, key: bytes | None = None
    ) -> asyncio.Future[None]:
        now = virtual_now(int(time.time() * 1000), self.origin_ms, self.rate)
        self.sent.append((topic, key, value, now))
        if self.stop_at is not None and len(self.sent) == self.stop_at[1]:
            self.stop_at[0].set()
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        fut.set_result(None)
        return fut


RATE = 20_000_000.0  # sixty virtual days in about a quarter of a second


class Clock:
    """The wall clock run_demo reads, spied on: its first reading fixes the plan's start."""

    def __init__(self) -> None:
        self.readings: list[int] = []

    def __call__(self) -> int:
        self.readings.append(int(time.time() * 1000))
        return self.readings[-1]


@pytest.fixture
def fake(monkeypatch: pytest.MonkeyPatch) -> tuple[int, Clock]:
    FakeProducer.instances.clear()
    FakeProducer.stop_at = None
    origin = int(time.time() * 1000)

    def factory(**config: Any) -> FakeProducer:
        return FakeProducer(origin, RATE, **config)

    clock = Clock()
    monkeypatch.setattr(demo, "AIOKafkaProducer", factory)
    monkeypatch.setattr(demo, "_wall_ms", clock)
    return origin, clock


async def test_run_demo_publishes_the_schedule_on_the_virtual_clock(
    fake: tuple[int, Clock],
) -> None:
    origin, clock = fake
    progress: list[dict[str, int]] = []
    counts = await run_demo(
        "broker:9092",
        "user-events",
        origin_ms=origin,
        rate=RATE,
        users=12,
        seed=3,
        on_progress=progress.append,
    )
    (producer,) = FakeProducer.instances
    assert producer.started and producer.stopped
    assert producer.config["acks"] == "all"
    assert producer.config["bootstrap_servers"] == "broker:9092"
    assert 0 < producer.config["linger_ms"] <= 50
    assert counts["sent"] == counts["scheduled"] == len(producer.sent)
    assert counts["users"] == 12
    assert sum(counts[p] for p in PERSONAS) == counts["sent"]
    assert progress and progress[-1] == counts

    # Exactly the plan build_schedule describes, started where the virtual clock stood, each
    # record sent once the virtual clock had reached its time.
    start = virtual_now(clock.readings[0], origin, RATE)
    plan = build_schedule(12, 3, start)
    assert [(u.encode(), p) for _, u, p in plan] == [(k, v) for _, k, v, _ in producer.sent]
    assert all(sent_at >= t for (t, _, _), (*_, sent_at) in zip(plan, producer.sent, strict=True))

    bad = 0
    for topic, key, value, sent_at in producer.sent:
        assert topic == "user-events"
        assert key is not None
        try:
            event = parse(value, key.decode(), sent_at)  # no future skew allowed
        except InvalidEvent:
            bad += 1
            continue
        assert key == event.user_id.encode()
        assert event.ts <= sent_at
    assert bad == counts["malformed"]


async def test_run_demo_stops_when_asked(fake: tuple[int, Clock]) -> None:
    origin, _ = fake
    stop = asyncio.Event()
    FakeProducer.stop_at = (stop, 40)
    counts = await asyncio.wait_for(
        run_demo("b:1", "t", origin_ms=origin, rate=RATE, users=12, stop=stop), timeout=10
    )
    (producer,) = FakeProducer.instances
    assert counts["sent"] == len(producer.sent) == 40 < counts["scheduled"]
    assert producer.stopped


async def test_the_endless_run_demo_goes_past_the_plan_until_stopped(
    fake: tuple[int, Clock],
) -> None:
    origin, clock = fake
    stop = asyncio.Event()
    planned = len(build_schedule(12, 3, START))
    FakeProducer.stop_at = (stop, 3 * planned)
    counts = await asyncio.wait_for(
        run_demo(
            "b:1", "t", origin_ms=origin, rate=RATE, users=12, seed=3, stop=stop, endless=True
        ),
        timeout=20,
    )
    (producer,) = FakeProducer.instances
    assert counts["sent"] == len(producer.sent) == 3 * planned
    assert "scheduled" not in counts
    assert counts["arrivals"] > 0 and counts["users"] == 12 + counts["arrivals"]
    start = virtual_now(clock.readings[0], origin, RATE)
    expected = itertools.islice(endless_schedule(12, 3, start), 3 * planned)
    assert [(u.encode(), p) for _, u, p in expected] == [(k, v) for _, k, v, _ in producer.sent]


async def test_run_demo_rejects_a_clock_that_does_not_move() -> None:
    with pytest.raises(ValueError, match="rate"):
        await run_demo("b:1", "t", origin_ms=0, rate=0)
