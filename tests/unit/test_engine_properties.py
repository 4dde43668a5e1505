"""Properties of the engine over generated histories (hypothesis)."""

from __future__ import annotations

from dataclasses import dataclass, field

from hypothesis import given
from hypothesis import strategies as st
from msgspec.structs import replace

from streams.core.checkpoints import NEVER
from streams.core.contract import Event
from streams.core.engine import Status, TooLate, apply_event, sweep
from streams.core.eventtime import DAY_MS, HOUR_MS, day_of
from streams.core.lifecycle import Stage
from streams.core.outputs import Kind, Output
from streams.core.policy import ChurnModel, Policy
from streams.core.state import (
    UserState,
    decode_state,
    decode_summary,
    encode_state,
    recent_fingerprints,
)
from streams.core.windows import window

from .pulse_testkit import BASE, POLICY, PROPERTY, ev, figures, keys, unversioned

TYPES = (*POLICY.event_types, "wishlist_add")  # the last one is counted as "other"
N_TYPES = len(POLICY.event_types) + 1
LATENESS = POLICY.lateness_ms


@dataclass
class Replay:
    """The outcome of feeding a sequence of records to the engine."""

    state: UserState | None = None
    outputs: list[Output] = field(default_factory=list)
    applied: list[Event] = field(default_factory=list)
    states: list[UserState] = field(default_factory=list)
    statuses: list[str] = field(default_factory=list)


def feed(events: list[Event], policy: Policy = POLICY, state: UserState | None = None) -> Replay:
    """Apply events in order; too-late ones are rejected (and recorded as such)."""
    rp = Replay(state=state)
    for e in events:
        try:
            r = apply_event(rp.state, e, policy)
        except TooLate:
            rp.statuses.append("too_late")
            continue
        rp.statuses.append(r.status)
        if r.status == Status.APPLIED:
            rp.applied.append(e)
        rp.state = r.state
        rp.outputs.extend(r.outputs)
        rp.states.append(r.state)
    return rp


@st.composite
def histories(
    draw: st.DrawFn, *, max_events: int = 25, span_days: int = 120, max_delay_hours: int = 100
) -> list[Event]:
    """Records of one user in arrival order: mostly in time order, some delayed (a few beyond
    the allowed lateness), some delivered twice."""
    # Dense histories (a few days) make late and out-of-order deliveries common.
    span = draw(st.sampled_from(sorted({min(d, span_days) for d in (2, 10, 40, span_days)})))
    delays = st.integers(0, max_delay_hours * HOUR_MS)
    specs = draw(
        st.lists(
            st.tuples(
                st.integers(0, span * DAY_MS),  # event time after BASE
                st.sampled_from(TYPES),
                st.sampled_from([0, 0, 1, 999, 15_000, 60_000]),  # amount in cents
                st.one_of(st.just(0), delays) if max_delay_hours else st.just(0),  # delay
            ),
            min_size=1,
            max_size=max_events,
        )
    )
    events = [
        ev(BASE + t, etype, amount_cents=amount, event_id=f"e{i}")
        for i, (t, etype, amount, _) in enumerate(specs)
    ]
    order = sorted(range(len(specs)), key=lambda i: (specs[i][0] + specs[i][3], i))
    seq = [events[i] for i in order]
    for _ in range(draw(st.integers(0, 4))):  # redeliveries of already sent records
        src = draw(st.integers(0, len(seq) - 1))
        seq.insert(draw(st.integers(src + 1, len(seq))), seq[src])
    return seq


def in_order(max_events: int = 25, span_days: int = 120) -> st.SearchStrategy[list[Event]]:
    return histories(max_events=max_events, span_days=span_days, max_delay_hours=0).map(
        lambda es: sorted({e.event_id: e for e in es}.values(), key=lambda e: e.ts)
    )


def check_state_invariants(s: UserState, policy: Policy = POLICY) -> None:
    today = day_of(s.evaluated_at)
    days = [b.day for b in s.buckets]
    assert days == sorted(set(days))
    assert all(today - policy.horizon_days < d <= today for d in days)
    assert all(len(b.counts) == N_TYPES and min(b.counts) >= 0 for b in s.buckets)
    assert all(sum(b.counts) > 0 and b.spend_cents >= 0 for b in s.buckets)
    assert s.first_seen <= s.last_seen <= s.evaluated_at
    assert s.last_active is None or s.first_seen <= s.last_active <= s.last_seen
    assert s.evaluated_at < s.next_check <= NEVER
    assert s.stage in Stage.ALL and s.tier in policy.tier_names
    assert 0.0 <= s.risk <= 1.0
    assert len(s.recent_ids) <= 8 * policy.dedup_capacity
    assert (s.episode_start is not None) == (s.stage == Stage.AT_RISK)


# --------------------------------------------------------------------------- windows


@PROPERTY
@given(records=histories(), extra_days=st.integers(0, 100))
def test_windows_count_exactly_the_distinct_applied_events(
    records: list[Event], extra_days: int
) -> None:
    rp = feed(records)
    assert rp.state is not None
    ids = [e.event_id for e in rp.applied]
    assert len(ids) == len(set(ids))  # a redelivered record is never applied twice
    too_late = {
        e.event_id for e, st_ in zip(records, rp.statuses, strict=True) if st_ == "too_late"
    }
    assert set(ids) == {e.event_id for e in records} - too_late
    s = rp.state
    assert s.total_events == len(rp.applied)
    assert s.total_spend_cents == sum(e.amount_cents for e in rp.applied if e.type == "purchase")
    # Later, after event time has passed, the windows have slid but still agree.
    later = sweep(s, s.evaluated_at + extra_days * DAY_MS, POLICY).state
    for st_ in (s, later):
        check_state_invariants(st_)
        today = day_of(st_.evaluated_at)
        for days in POLICY.windows_days:
            inside = [e for e in rp.applied if today - days < day_of(e.ts) <= today]
            w = window(st_.buckets, today, days, N_TYPES)
            assert w.events == len(inside) >= 0
            assert w.counts == tuple(
                sum(1 for e in inside if TYPES.index(e.type) == i) for i in range(N_TYPES)
            )
            assert min(w.counts, default=0) >= 0
            assert w.spend_cents == sum(e.amount_cents for e in inside if e.type == "purchase")
            assert w.spend_cents >= 0
            active = {day_of(e.ts) for e in inside if e.type not in POLICY.passive_types}
            assert w.active_days == len(active)


@PROPERTY
@given(records=histories())
def test_every_intermediate_state_is_well_formed(records: list[Event]) -> None:
    rp = feed(records)
    for s in rp.states:
        check_state_invariants(s)
    # Decisions are stamped with the user's clock, which never goes back.
    stamps = [o.ts for o in rp.outputs]
    assert stamps == sorted(stamps)
    # One churn warning per entry into at_risk, at the same moment and for the same reason.
    entries = [
        o for o in rp.outputs if o.kind == Kind.LIFECYCLE and o.payload["to_stage"] == "at_risk"
    ]
    warnings = [o for o in rp.outputs if o.kind == Kind.WARNING]
    assert [(o.ts, o.payload["reason"]) for o in entries] == [
        (w.ts, w.payload["reason"]) for w in warnings
    ]


# --------------------------------------------------------------------------- duplicates


@PROPERTY
@given(records=histories(max_events=20), data=st.data())
def test_applying_the_same_event_twice_changes_nothing(
    records: list[Event], data: st.DataObject
) -> None:
    rp = feed(records)
    assert rp.state is not None and rp.applied
    again = data.draw(st.sampled_from(rp.applied))
    r = apply_event(rp.state, again, POLICY)
    assert (r.status, r.outputs) == (Status.DUPLICATE, ())
    assert r.state == rp.state
    # Immediately twice in a row, too.
    fresh = replace(again, event_id="fresh", ts=rp.state.evaluated_at)
    first = apply_event(rp.state, fresh, POLICY)
    second = apply_event(first.state, fresh, POLICY)
    assert (second.status, second.outputs, second.state) == (Status.DUPLICATE, (), first.state)


@PROPERTY
@given(records=in_order(max_events=15), data=st.data())
def test_a_redelivered_offset_changes_nothing(records: list[Event], data: st.DataObject) -> None:
    state: UserState | None = None
    for offset, e in enumerate(records):
        state = apply_event(state, e, POLICY, partition=4, offset=offset).state
    assert state is not None
    offset = data.draw(st.integers(0, len(records) - 1))
    other = ev(state.evaluated_at, event_id="anything")
    r = apply_event(state, other, POLICY, partition=4, offset=offset)
    assert (r.status, r.outputs, r.state) == (Status.REDELIVERED, (), state)


# --------------------------------------------------------------------------- order


@PROPERTY
@given(
    prefix=st.one_of(st.just([]), in_order(max_events=10, span_days=60)),
    batch=st.lists(
        st.tuples(st.integers(0, LATENESS), st.sampled_from(TYPES), st.sampled_from([0, 2_500])),
        min_size=1,
        max_size=12,
    ),
    shift=st.one_of(st.integers(-LATENESS, 0), st.integers(0, 40 * DAY_MS)),
    data=st.data(),
)
def test_order_within_the_allowed_lateness_does_not_change_the_figures(
    prefix: list[Event],
    batch: list[tuple[int, str, int]],
    shift: int,
    data: st.DataObject,
) -> None:
    # The batch spans at most the allowed lateness and starts no earlier than the user's clock
    # minus the lateness, so every order of it is accepted.
    start = (prefix[-1].ts if prefix else BASE + LATENESS) + shift
    events = [
        ev(start + dt, etype, amount_cents=amount, event_id=f"b{i}")
        for i, (dt, etype, amount) in enumerate(batch)
    ]
    shuffled = data.draw(st.permutations(events))
    base = feed(prefix).state
    by_time = feed(sorted(events, key=lambda e: e.ts), state=base)
    a, b = feed(events, state=base), feed(shuffled, state=base)
    assert a.statuses == b.statuses == [Status.APPLIED] * len(events)  # none too late
    assert a.state is not None and b.state is not None and by_time.state is not None
    assert figures(a.state) == figures(b.state) == figures(by_time.state)
    assert a.state.evaluated_at == b.state.evaluated_at
    assert _fingerprints(a.state) == _fingerprints(b.state)


# --------------------------------------------------------------------------- sweeps


@st.composite
def sweep_times(draw: st.DrawFn, lo: int, hi: int) -> list[int]:
    """Increasing sweep times ending at `hi`: random, regular (fine or coarse) or both."""
    points = draw(st.lists(st.integers(lo, hi), max_size=30))
    fine = list(range(lo, hi, draw(st.sampled_from([HOUR_MS, 5 * HOUR_MS, DAY_MS, 3 * DAY_MS]))))
    chosen = draw(st.sampled_from(["random", "regular", "both"]))
    times = {"random": points, "regular": fine, "both": points + fine}[chosen]
    return sorted(times) + [hi]


@PROPERTY
@given(records=histories(), horizon_days=st.integers(0, 200), data=st.data())
def test_sweeping_in_many_steps_equals_one_sweep(
    records: list[Event], horizon_days: int, data: st.DataObject
) -> None:
    s0 = feed(records).state
    assert s0 is not None
    end = s0.evaluated_at + horizon_days * DAY_MS
    once = sweep(s0, end, POLICY)
    state, outs = s0, list[Output]()
    for t in data.draw(sweep_times(s0.evaluated_at - DAY_MS, end)):
        r = sweep(state, t, POLICY)
        state = r.state
        outs.extend(r.outputs)
    assert keys(outs) == keys(once.outputs)
    assert [o.payload for o in outs] == [o.payload for o in once.outputs]
    assert unversioned(state) == unversioned(once.state)


@PROPERTY
@given(records=in_order(), data=st.data())
def test_sweeps_between_in_order_events_do_not_change_anything(
    records: list[Event], data: st.DataObject
) -> None:
    plain = feed(records)
    assert plain.state is not None
    end = records[-1].ts + 100 * DAY_MS
    plain_end = sweep(plain.state, end, POLICY)
    # The same events with sweeps (as a worker's ticks would) anywhere up to the next event.
    state: UserState | None = None
    outs: list[Output] = []
    prev_ts = records[0].ts
    for e in records:
        if state is not None:
            for t in sorted(data.draw(st.lists(st.integers(prev_ts, e.ts), max_size=3))):
                r = sweep(state, t, POLICY)
                state = r.state
                outs.extend(r.outputs)
        r = apply_event(state, e, POLICY)
        state = r.state
        outs.extend(r.outputs)
        prev_ts = e.ts
    assert state is not None
    final = sweep(state, end, POLICY)
    assert keys(outs + list(final.outputs)) == keys(plain.outputs + list(plain_end.outputs))
    assert unversioned(final.state) == unversioned(plain_end.state)


@PROPERTY
@given(records=histories())
def test_two_runs_of_the_same_input_give_identical_outputs(records: list[Event]) -> None:
    a, b = feed(records), feed(records)
    assert keys(a.outputs) == keys(b.outputs)
    assert a.state == b.state


# --------------------------------------------------------------------------- state and risk


@PROPERTY
@given(records=histories(), sweep_days=st.integers(0, 150))
def test_state_round_trips_through_its_encoding(records: list[Event], sweep_days: int) -> None:
    rp = feed(records)
    assert rp.state is not None
    later = sweep(rp.state, rp.state.evaluated_at + sweep_days * DAY_MS, POLICY).state
    for s in [*rp.states, later]:
        data = encode_state(s)
        assert isinstance(data, bytes)
        assert decode_state(data) == s
        summary = decode_summary(data)  # what an index rebuild reads
        for name in ("partition", "stage", "tier", "next_check", "recall_tally"):
            assert getattr(summary, name) == getattr(s, name)


@PROPERTY
@given(records=histories(), sweep_days=st.integers(0, 100))
def test_risk_score_is_always_between_0_and_1(records: list[Event], sweep_days: int) -> None:
    rp = feed(records)
    assert rp.state is not None
    swept = sweep(rp.state, rp.state.evaluated_at + sweep_days * DAY_MS, POLICY)
    for s in [*rp.states, swept.state]:
        assert 0.0 <= s.risk <= 1.0
    for o in [*rp.outputs, *swept.outputs]:
        if o.kind == Kind.WARNING:
            assert 0.0 <= o.payload["risk_score"] <= 1.0


# --------------------------------------------------------------------------- checkpoints

CHECKPOINT_POLICIES = (
    POLICY,
    # The activity-drop rule applies from 3 active days: it decides often in short histories.
    Policy(drop_min_active_days_30d=3),
    Policy(churn_model=ChurnModel(r=0.243, alpha=4.414, a=0.793, b=2.426)),
)


@st.composite
def active_days(draw: st.DrawFn) -> list[Event]:
    """One event on each of a set of days, in order: regular users who slow down or pause,
    the histories the activity-drop rule decides on."""
    span = draw(st.sampled_from([45, 150]))  # 150: days leave the 90-day window too
    days = sorted(draw(st.sets(st.integers(0, span), min_size=3, max_size=35)))
    hours = draw(st.lists(st.integers(0, 23), min_size=len(days), max_size=len(days)))
    return [
        ev(BASE + d * DAY_MS + h * HOUR_MS, "session_start", event_id=f"d{d}")
        for d, h in zip(days, hours, strict=True)
    ]


@PROPERTY
@given(
    records=st.one_of(histories(max_delay_hours=0), active_days()),
    policy=st.sampled_from(CHECKPOINT_POLICIES),
    data=st.data(),
)
def test_no_decision_changes_before_the_next_checkpoint(
    records: list[Event], policy: Policy, data: st.DataObject
) -> None:
    """A sweep visits a user only at checkpoints, so a decision between two of them would be
    missed: deciding at any earlier moment (every midnight, when windows slide, and a few
    others) must change nothing."""
    s = feed(records, policy).state
    assert s is not None
    end = min(s.next_check, s.evaluated_at + 100 * DAY_MS)
    midnights = range((day_of(s.evaluated_at) + 1) * DAY_MS, end, DAY_MS)
    others = data.draw(st.lists(st.integers(s.evaluated_at, end), max_size=5))
    for t in [*midnights, *others, end - 1]:
        if s.evaluated_at < t < s.next_check:
            early = sweep(replace(s, next_check=t), t, policy)
            assert early.outputs == ()
            assert (early.state.stage, early.state.tier) == (s.stage, s.tier)


def _fingerprints(state: UserState) -> list[bytes]:
    ids = recent_fingerprints(state.recent_ids)
    return sorted(ids[i : i + 8] for i in range(0, len(ids), 8))
