"""Scenarios through apply_event and sweep, named for the behaviour they pin down."""

from __future__ import annotations

import re

import pytest
from msgspec.structs import replace

from streams.core.checkpoints import NEVER, next_checkpoint
from streams.core.churn import WarningReason
from streams.core.contract import Event, Reason
from streams.core.engine import Status, TooLate, apply_event, sweep
from streams.core.eventtime import DAY_MS, HOUR_MS, day_of
from streams.core.lifecycle import Stage
from streams.core.outputs import Kind, Output, encode_output, to_wire
from streams.core.policy import Policy
from streams.core.state import (
    UserState,
    decode_state,
    encode_state,
    fingerprint,
    seen_before,
)

from .pulse_testkit import (
    POLICY,
    at,
    ev,
    keys,
    purchase,
    run,
    sweep_in_steps,
    tier_moves,
    transitions,
    unversioned,
    warnings,
)

LATENESS = POLICY.lateness_ms  # 48 hours


def daily(first_day: int, last_day: int, hour: int = 9) -> list[Event]:
    """One session a day at `hour`, days first_day..last_day inclusive."""
    return [ev(at(days=d, hours=hour)) for d in range(first_day, last_day + 1)]


def state_of(events: list[Event], policy: Policy = POLICY) -> UserState:
    state, _, _ = run(events, policy)
    assert state is not None
    return state


# --------------------------------------------------------------------------- first events


def test_first_event_makes_a_new_user_in_the_lowest_tier() -> None:
    r = apply_event(None, ev(at(hours=10), "signup"), POLICY, partition=3, offset=17)
    s = r.state
    assert r.status == Status.APPLIED and r.changed
    assert (s.stage, s.stage_reason, s.stage_since, s.tier) == (
        "new",
        "first_seen",
        s.first_seen,
        "bronze",
    )
    assert (s.first_seen, s.last_seen, s.last_active, s.evaluated_at) == (at(hours=10),) * 4
    assert (s.total_events, s.partition, s.last_offset, s.version) == (1, 3, 17, 1)
    assert transitions(r.outputs) == [(None, "new", "first_seen")]
    assert tier_moves(r.outputs) == [(None, "bronze", "initial", at(hours=10))]
    assert [o.kind for o in r.outputs] == [Kind.LIFECYCLE, Kind.TIER]


def test_next_checkpoint_of_a_fresh_user_is_the_end_of_the_new_user_period() -> None:
    # Nothing a rule reads changes at the midnights before: the user is not due until then.
    s = apply_event(None, ev(at(hours=10)), POLICY).state
    assert s.next_check == next_checkpoint(s, POLICY) == at(days=7, hours=10)


def test_a_spend_day_leaving_the_tier_window_is_a_checkpoint() -> None:
    spender = apply_event(None, ev(at(hours=10), "purchase", amount_cents=15_000), POLICY).state
    # Signed up, then silent: the next decision is the new period's end (day 7), then the
    # silence thresholds, and the purchase leaves the 90-day tier window on day 90.
    state = sweep(spender, at(days=61), POLICY).state
    assert state.tier == "silver"
    assert state.next_check == at(days=90)
    assert sweep(state, at(days=90), POLICY).state.downgrade_pending_since == at(days=90)


def test_new_user_becomes_active_when_the_new_period_ends() -> None:
    _, outs, _ = run(daily(0, 10))
    changes = [o for o in outs if o.kind == Kind.LIFECYCLE]
    assert transitions(changes) == [
        (None, "new", "first_seen"),
        ("new", "active", "new_period_over"),
    ]
    assert changes[1].ts == at(days=7, hours=9)  # first_seen + new_user_days, found by a sweep


def test_sweep_with_nothing_due_is_idle_and_changes_nothing() -> None:
    s = apply_event(None, ev(at(hours=10)), POLICY).state
    r = sweep(s, at(hours=23), POLICY)
    assert (r.status, r.outputs, r.state, r.changed) == (Status.IDLE, (), s, False)
    r = sweep(s, at(hours=1), POLICY)  # the past
    assert r.status == Status.IDLE and r.state is s


# --------------------------------------------------------------------------- churn warnings


@pytest.mark.parametrize(
    "step_ms",
    [pytest.param(None, id="one-sweep"), HOUR_MS, 7 * HOUR_MS, DAY_MS, 5 * DAY_MS],
)
def test_silent_user_gets_one_warning_per_episode(step_ms: int | None) -> None:
    state = state_of(daily(0, 19))  # daily user: typical gap 1 day, threshold the 3-day floor
    end = at(days=120)
    times = [end] if step_ms is None else list(range(at(days=19, hours=10), end + 1, step_ms))
    # Sweep every instant several times over: repeats must not warn again.
    state, outs = sweep_in_steps(state, [t for t in times for _ in range(3)])
    (warning,) = warnings(outs)
    assert warning.ts == at(days=22, hours=9)  # last activity + 3 days
    assert warning.payload["reason"] == WarningReason.SILENCE
    assert warning.payload["stage_before"] == Stage.ACTIVE
    assert transitions(outs) == [
        ("active", "at_risk", "silence_exceeds_normal"),
        ("at_risk", "dormant", "silence_dormant"),
        ("dormant", "churned", "silence_churned"),
    ]
    assert (state.stage, state.episode_start) == (Stage.CHURNED, None)
    # The same history swept once gives the very same outputs.
    _, once = sweep_in_steps(state_of(daily(0, 19)), [end])
    assert keys(outs) == keys(once)


def test_each_at_risk_episode_gets_its_own_warning() -> None:
    state, outs, _ = run(daily(0, 19) + daily(24, 40))
    assert state is not None
    state, more = sweep_in_steps(state, [at(days=50)])
    ws = warnings(outs + more)
    # Silent after day 19 (at risk from day 22, back on day 24), and after day 40.
    assert [w.ts for w in ws] == [at(days=22, hours=9), at(days=43, hours=9)]
    assert len({w.idempotency_key for w in ws}) == 2
    assert transitions(outs)[2:4] == [
        ("active", "at_risk", "silence_exceeds_normal"),
        ("at_risk", "active", "recovered"),
    ]


def test_return_ends_a_silence_episode_and_new_silence_starts_another() -> None:
    # Silent after day 19 (warned day 22), back on days 24..30, silent again (warned day 33),
    # back on days 35..36: a silence episode ends with the return, even though the 7-day rate
    # is below drop_recover_ratio; the silence after day 36 is a new episode (warned day 39).
    state, outs, _ = run(daily(0, 19) + daily(24, 30) + daily(35, 36))
    assert state is not None
    state, more = sweep_in_steps(state, [at(days=39, hours=12)])
    assert [w.ts for w in warnings(outs + more)] == [
        at(days=22, hours=9),
        at(days=33, hours=9),
        at(days=39, hours=9),
    ]
    assert state.stage == Stage.AT_RISK
    assert state.episode_start == at(days=39, hours=9)


def test_warning_payload_has_reason_risk_tier_and_figures() -> None:
    state, _, _ = run(daily(0, 19) + [purchase(at(days=19, hours=10), 20_000)])
    assert state is not None
    _, outs = sweep_in_steps(state, [at(days=23)])
    (w,) = warnings(outs)
    assert w.payload["tier"] == "silver"
    assert 0 < w.payload["risk_score"] < 1
    assert w.payload["figures"] == {
        "silence_days": 3.0,
        "typical_gap_days": 1.0,
        "threshold_days": 3.0,
        "active_days_7d": 4,  # days 16..19 of the window 16..22
        "active_days_30d": 20,
    }
    assert state.stage == Stage.ACTIVE


def test_sharp_activity_drop_warns_before_silence_would() -> None:
    # A fixed 10-day silence threshold, so only the drop rule can fire early.
    policy = Policy(at_risk_floor_days=10, at_risk_ceiling_days=10, at_risk_default_days=10)
    state = state_of(daily(0, 29), policy)
    state, outs = sweep_in_steps(state, [at(days=45)], policy)
    ws = warnings(outs)
    # Day 35: 1 active day of the last 7 (day 29) against 25 of the last 30.
    assert [(w.ts, w.payload["reason"]) for w in ws] == [(at(days=35), WarningReason.ACTIVITY_DROP)]
    assert ws[0].payload["figures"]["active_days_7d"] == 1
    # The silence rule would fire on day 39, inside the same episode: no second warning.
    assert transitions(outs) == [("active", "at_risk", "activity_drop")]
    assert (state.stage, state.last_warning_reason) == (Stage.AT_RISK, "activity_drop")


def test_passive_events_do_not_count_as_activity_or_spend() -> None:
    events = daily(0, 19) + [
        ev(at(days=d, hours=12), "points_earned", amount_cents=5_000) for d in range(19, 30)
    ]
    state, outs, _ = run(events)
    assert state is not None
    assert state.last_active == at(days=19, hours=9)
    assert state.last_seen == at(days=29, hours=12)
    assert state.total_spend_cents == 0 and state.tier == "bronze"
    assert [w.ts for w in warnings(outs)] == [at(days=22, hours=9)]


def test_unknown_types_are_counted_as_other() -> None:
    state = state_of([ev(at(hours=1), "page_view"), ev(at(hours=2), "wishlist_add")])
    (bucket,) = state.buckets
    assert bucket.counts == (0, 0, 1, 0, 0, 0, 1)  # ... page_view ..., "other" last


def test_amounts_of_non_spend_types_are_not_spend() -> None:
    state = state_of([ev(at(hours=1), "custom", amount_cents=99_999_999)])
    assert (state.total_spend_cents, state.buckets[0].spend_cents, state.tier) == (0, 0, "bronze")


# ------------------------------------------------------------------ duplicates and redelivery


def test_duplicate_event_id_is_not_counted_twice() -> None:
    first = ev(at(hours=10), "purchase", amount_cents=15_000, event_id="order-1")
    s1 = apply_event(None, first, POLICY, partition=0, offset=1).state
    again = ev(at(hours=11), "purchase", amount_cents=15_000, event_id="order-1")
    r = apply_event(s1, again, POLICY, partition=0, offset=2)
    assert (r.status, r.outputs) == (Status.DUPLICATE, ())
    assert (r.state.total_events, r.state.total_spend_cents, r.state.buckets) == (
        1,
        15_000,
        s1.buckets,
    )
    assert r.state.last_offset == 2  # the position still advances
    assert r.state.last_seen == at(hours=10)


def test_duplicate_is_recognised_even_when_it_is_too_late() -> None:
    s = state_of([ev(at(hours=1), event_id="a"), ev(at(days=5), event_id="b")])
    r = apply_event(s, ev(at(hours=1), event_id="a"), POLICY)
    assert r.status == Status.DUPLICATE


def test_dedup_memory_is_bounded_by_the_policy() -> None:
    policy = Policy(dedup_capacity=3)
    events = [ev(at(minutes=m), event_id=f"e{m}") for m in range(5)]
    state = state_of(events, policy)
    assert len(state.recent_ids) == 3 * 8
    assert apply_event(state, events[4], policy).status == Status.DUPLICATE
    # The oldest id has been forgotten: it is counted again (a documented limit).
    assert apply_event(state, events[0], policy).status == Status.APPLIED


def test_a_state_with_the_former_tuple_of_fingerprints_still_recognises_duplicates() -> None:
    events = [ev(at(minutes=m), event_id=f"e{m}") for m in range(3)]
    state = state_of(events)
    ids = state.recent_ids
    assert isinstance(ids, bytes)
    # As states were written before the fingerprints became bytes: a msgpack array of ints.
    old = replace(
        state, recent_ids=tuple(int.from_bytes(ids[i : i + 8]) for i in range(0, len(ids), 8))
    )
    old = decode_state(encode_state(old))
    assert isinstance(old.recent_ids, tuple)
    assert apply_event(old, events[1], POLICY).status == Status.DUPLICATE
    fresh = apply_event(old, ev(at(minutes=9), event_id="e9"), POLICY).state
    assert fresh.recent_ids == ids + fingerprint("e9")


def test_a_fingerprint_matches_only_at_its_own_place() -> None:
    a, b = fingerprint("a"), fingerprint("b")
    assert seen_before(a + b, b) and seen_before(a + b, a)
    # The 8 bytes straddling a and b are not a fingerprint of the list.
    assert not seen_before(a + b, (a + b)[3:11])
    assert not seen_before(b"", a)


def test_redelivered_offset_is_ignored() -> None:
    s = apply_event(None, ev(at(hours=1), event_id="a"), POLICY, partition=2, offset=5).state
    s = apply_event(s, ev(at(hours=2), event_id="b"), POLICY, partition=2, offset=6).state
    for offset in (0, 5, 6):
        r = apply_event(s, ev(at(hours=3), event_id=f"new-{offset}"), POLICY, 2, offset)
        assert (r.status, r.outputs, r.state, r.changed) == (Status.REDELIVERED, (), s, False)
    r = apply_event(s, ev(at(hours=3), event_id="c"), POLICY, partition=2, offset=7)
    assert r.status == Status.APPLIED and r.state.last_offset == 7


def test_offsets_of_another_partition_are_not_redeliveries() -> None:
    s = apply_event(None, ev(at(hours=1), event_id="a"), POLICY, partition=0, offset=100).state
    r = apply_event(s, ev(at(hours=2), event_id="b"), POLICY, partition=1, offset=3)
    assert r.status == Status.APPLIED
    assert (r.state.partition, r.state.last_offset) == (1, 3)
    r2 = apply_event(r.state, ev(at(hours=3), event_id="c"), POLICY, partition=1, offset=4)
    assert r2.status == Status.APPLIED


def test_duplicate_on_a_new_partition_does_not_swallow_the_next_event() -> None:
    s = apply_event(None, ev(at(hours=1), event_id="a"), POLICY, partition=0, offset=1000).state
    dup = apply_event(s, ev(at(hours=1), event_id="a"), POLICY, partition=1, offset=5)
    assert dup.status == Status.DUPLICATE
    nxt = apply_event(dup.state, ev(at(hours=2), event_id="b"), POLICY, partition=1, offset=6)
    assert nxt.status == Status.APPLIED


# --------------------------------------------------------------------------- lateness


def test_too_late_event_is_rejected() -> None:
    s = state_of([ev(at(days=5))])
    with pytest.raises(TooLate) as info:
        apply_event(s, ev(at(days=5) - LATENESS - 1, event_id="late"), POLICY)
    assert info.value.reason == Reason.TOO_LATE
    assert info.value.user_id == "u1"
    assert str(at(days=5) - LATENESS) in info.value.detail
    # Exactly at the cutoff is still in time.
    r = apply_event(s, ev(at(days=5) - LATENESS, event_id="on-time"), POLICY)
    assert r.status == Status.APPLIED


def test_the_lateness_cutoff_follows_the_checkpoints_a_sweep_passed() -> None:
    s = state_of([ev(at(days=5))])
    # Nothing was due by day 7: no decision was made, so the clock stays and a late event
    # for day 4 still counts (it changes nothing already emitted).
    idle = sweep(s, at(days=7), POLICY)
    assert idle.status == Status.IDLE and idle.state.evaluated_at == at(days=5)
    assert apply_event(s, ev(at(days=4), event_id="late-ok"), POLICY).status == Status.APPLIED
    # The new-user period ended on day 12: decided there, so the clock moved there.
    s = sweep(s, at(days=13), POLICY).state
    assert s.evaluated_at == at(days=12)
    with pytest.raises(TooLate):
        apply_event(s, ev(at(days=12) - LATENESS - 1, event_id="late"), POLICY)


def test_late_event_within_lateness_updates_the_right_day_bucket() -> None:
    s = state_of([ev(at(days=10, hours=2), "page_view")])
    late = ev(at(days=8, hours=5), "purchase", amount_cents=2_500)  # 45 hours late
    r = apply_event(s, late, POLICY)
    assert r.status == Status.APPLIED
    days = {b.day: b for b in r.state.buckets}
    assert sorted(days) == [day_of(at(days=8)), day_of(at(days=10))]
    assert days[day_of(at(days=8))].counts == (0, 0, 0, 1, 0, 0, 0)
    assert days[day_of(at(days=8))].spend_cents == 2_500
    assert days[day_of(at(days=10))].counts == (0, 0, 1, 0, 0, 0, 0)
    assert r.state.first_seen == at(days=8, hours=5)
    assert r.state.last_seen == at(days=10, hours=2)
    assert r.state.last_active == at(days=10, hours=2)
    assert r.state.evaluated_at == at(days=10, hours=2)  # the clock does not go back


def test_late_event_decisions_are_stamped_with_the_users_clock() -> None:
    s = state_of([ev(at(days=10, hours=2))])
    r = apply_event(s, purchase(at(days=9), 60_000), POLICY)
    assert tier_moves(r.outputs) == [("bronze", "gold", "upgrade", at(days=10, hours=2))]


# --------------------------------------------------------------------------- tiers and return


def test_big_spender_is_upgraded() -> None:
    _, outs, _ = run([ev(at(hours=9)), purchase(at(hours=10), 250_000)])
    assert tier_moves(outs) == [
        (None, "bronze", "initial", at(hours=9)),
        ("bronze", "platinum", "upgrade", at(hours=10)),
    ]
    up = [o for o in outs if o.kind == Kind.TIER][1]
    assert up.payload["figures"] == {"spend_window": 2500.0, "threshold": 2000.0}
    assert up.payload["reason"] == "spend_reached_threshold"


@pytest.mark.parametrize(
    ("away_days", "stage_before"),
    [(45, Stage.DORMANT), (75, Stage.CHURNED)],
)
def test_dormant_user_who_returns_is_reactivated(away_days: int, stage_before: str) -> None:
    back = 19 + away_days
    state, outs, _ = run(daily(0, 19) + daily(back, back + 20, hour=15))
    assert state is not None
    ts = at(days=back, hours=15)
    changes = [o for o in outs if o.kind == Kind.LIFECYCLE and o.ts >= ts]
    assert transitions(changes)[:2] == [
        (stage_before, "reactivated", "returned"),
        ("reactivated", "active", "reactivation_settled"),
    ]
    assert changes[0].ts == ts
    assert changes[1].ts == ts + 14 * DAY_MS  # reactivated_days later
    assert state.returned_at == ts
    assert state.stage == Stage.ACTIVE


def test_return_after_dormancy_is_evaluated_after_the_due_decisions() -> None:
    # No sweeps at all: the event itself first makes the decisions that fell due before it.
    state, outs, _ = run(daily(0, 19) + [ev(at(days=100))])
    assert state is not None
    assert transitions(outs)[-4:] == [
        ("active", "at_risk", "silence_exceeds_normal"),
        ("at_risk", "dormant", "silence_dormant"),
        ("dormant", "churned", "silence_churned"),
        ("churned", "reactivated", "returned"),
    ]
    assert [o.ts for o in outs] == sorted(o.ts for o in outs)


# --------------------------------------------------------------------------- idempotency


def scenario() -> list[Event]:
    return (
        daily(0, 19)
        + [purchase(at(days=3, hours=12), 12_000), purchase(at(days=18, hours=12), 45_000)]
        + [ev(at(days=17, hours=23), "page_view", event_id="late-one")]
        + daily(70, 75)
    )


def replay() -> list[Output]:
    state, outs, _ = run(sorted(scenario(), key=lambda e: e.ts))
    assert state is not None
    _, more = sweep_in_steps(state, [at(days=100), at(days=300)])
    return outs + more


def test_idempotency_keys_are_identical_across_two_runs() -> None:
    a, b = replay(), replay()
    assert len(a) > 10
    assert keys(a) == keys(b)
    assert [o.payload for o in a] == [o.payload for o in b]


def test_idempotency_keys_are_unique_and_hex() -> None:
    outs = replay()
    ks = [o.idempotency_key for o in outs]
    assert len(set(ks)) == len(ks)
    assert all(re.fullmatch(r"[0-9a-f]{32}", k) for k in ks)


def test_idempotency_keys_differ_between_users() -> None:
    _, oa, _ = run([ev(at(hours=1), user_id="alice")])
    _, ob, _ = run([ev(at(hours=1), user_id="bob")])
    assert {o.idempotency_key for o in oa}.isdisjoint(o.idempotency_key for o in ob)


def test_wire_format() -> None:
    _, outs, _ = run([ev(at(hours=10))])
    doc = to_wire(outs[0], at(hours=10, ms=5))
    assert doc == {
        "schema_version": 1,
        "kind": "lifecycle_changed",
        "idempotency_key": outs[0].idempotency_key,
        "user_id": "u1",
        "event_time": "2026-11-22T10:00:00.000Z",
        "event_time_ms": at(hours=10),
        "emitted_at": "2026-11-22T10:00:00.005Z",
        "from_stage": None,
        "to_stage": "new",
        "reason": "first_seen",
        "figures": outs[0].payload["figures"],
    }
    assert encode_output(outs[0], 0).startswith(b'{"schema_version":1,')


# --------------------------------------------------------------------------- checkpoints


def test_a_long_silent_user_runs_out_of_checkpoints() -> None:
    state = state_of(daily(0, 3))
    state, _ = sweep_in_steps(state, [at(days=400)])
    assert state.buckets == ()  # everything left the 90-day horizon
    assert state.stage == Stage.CHURNED
    assert state.next_check == NEVER
    assert sweep(state, at(days=4000), POLICY).status == Status.IDLE


def test_sweep_stops_at_now_and_resumes_where_it_left_off() -> None:
    state = state_of(daily(0, 19))
    half, first = sweep_in_steps(state, [at(days=40)])
    assert all(o.ts <= at(days=40) for o in first)
    assert half.evaluated_at <= at(days=40) < half.next_check
    _, rest = sweep_in_steps(half, [at(days=120)])
    _, whole = sweep_in_steps(state, [at(days=120)])
    assert keys(first + rest) == keys(whole)
    assert unversioned(sweep_in_steps(half, [at(days=120)])[0]) == unversioned(
        sweep_in_steps(state, [at(days=120)])[0]
    )


# --------------------------------------------------------------------------- known defects


def test_pruned_history_does_not_end_a_silent_episode() -> None:
    # Ten daily sessions (gaps of 1 day) then one session every 29 days: the median gap stays
    # 1 day (threshold: the 3-day floor) until the daily days leave the 90-day horizon.
    events = daily(0, 9) + [ev(at(days=d, hours=9)) for d in (29, 58, 87)]
    state = state_of(events)
    state, outs = sweep_in_steps(state, [at(days=87 + 29, hours=8)])  # never dormant
    assert state.last_active == at(days=87, hours=9)
    assert len(warnings(outs)) == 1, transitions(outs)
    assert ("at_risk", "active", "recovered") not in transitions(outs)
