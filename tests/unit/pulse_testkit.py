"""Small helpers shared by the unit tests of the pure core (not a test module itself).

Kept out of conftest.py so that test modules can import them by a name that cannot collide
with another directory's conftest.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from hypothesis import HealthCheck, settings
from msgspec.structs import replace

from streams.core.contract import Event
from streams.core.engine import Result, apply_event, sweep
from streams.core.eventtime import DAY_MS, HOUR_MS
from streams.core.outputs import Kind, Output
from streams.core.policy import Policy
from streams.core.state import UserState

# 2026-11-22T00:00:00Z: a UTC midnight, so BASE + n * DAY_MS is the start of UTC day n.
BASE = 1_795_305_600_000
MINUTE_MS = 60_000
POLICY = Policy()

# Shared settings for property tests: modest example counts, no per-example deadline (the engine
# sweeps day by day, so a long history is legitimately slower than hypothesis' default 200 ms).
PROPERTY = settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


def at(days: float = 0, hours: float = 0, minutes: float = 0, ms: int = 0) -> int:
    """An event time relative to BASE."""
    return BASE + int(days * DAY_MS) + int(hours * HOUR_MS) + int(minutes * MINUTE_MS) + ms


def ev(
    ts: int,
    type: str = "session_start",
    *,
    amount_cents: int = 0,
    event_id: str | None = None,
    user_id: str = "u1",
) -> Event:
    """A validated event; the id defaults to one derived from time and type."""
    return Event(
        event_id=event_id if event_id is not None else f"{type}@{ts}",
        user_id=user_id,
        type=type,
        ts=ts,
        amount_cents=amount_cents,
        has_amount=amount_cents > 0,
    )


def purchase(ts: int, amount_cents: int, event_id: str | None = None) -> Event:
    return ev(ts, "purchase", amount_cents=amount_cents, event_id=event_id)


def run(
    events: Iterable[Event],
    policy: Policy = POLICY,
    state: UserState | None = None,
) -> tuple[UserState | None, list[Output], list[str]]:
    """Apply events in order; returns the final state, every output and every status."""
    outs: list[Output] = []
    statuses: list[str] = []
    for e in events:
        r = apply_event(state, e, policy)
        state = r.state
        outs.extend(r.outputs)
        statuses.append(r.status)
    return state, outs, statuses


def sweep_in_steps(
    state: UserState, times: Iterable[int], policy: Policy = POLICY
) -> tuple[UserState, list[Output]]:
    """Sweep to each of `times` in turn."""
    outs: list[Output] = []
    for t in times:
        r: Result = sweep(state, t, policy)
        state = r.state
        outs.extend(r.outputs)
    return state, outs


def keys(outs: Iterable[Output]) -> list[tuple[str, int, str]]:
    """What identifies an output on the wire: kind, event time, idempotency key."""
    return [(o.kind, o.ts, o.idempotency_key) for o in outs]


def of_kind(outs: Iterable[Output], kind: str) -> list[Output]:
    return [o for o in outs if o.kind == kind]


def warnings(outs: Iterable[Output]) -> list[Output]:
    return of_kind(outs, Kind.WARNING)


def transitions(outs: Iterable[Output]) -> list[tuple[str | None, str, str]]:
    """(from_stage, to_stage, reason) of every lifecycle_changed output, in order."""
    return [
        (o.payload["from_stage"], o.payload["to_stage"], o.payload["reason"])
        for o in of_kind(outs, Kind.LIFECYCLE)
    ]


def tier_moves(outs: Iterable[Output]) -> list[tuple[str | None, str, str, int]]:
    """(from_tier, to_tier, direction, ts) of every tier_changed output, in order."""
    return [
        (o.payload["from_tier"], o.payload["to_tier"], o.payload["direction"], o.ts)
        for o in of_kind(outs, Kind.TIER)
    ]


def unversioned(state: UserState) -> UserState:
    """The state with its write counter zeroed (it counts calls, not decisions)."""
    return replace(state, version=0)


def figures(state: UserState) -> dict[str, Any]:
    """The order-independent figures of a state."""
    return {
        "buckets": state.buckets,
        "total_events": state.total_events,
        "total_spend_cents": state.total_spend_cents,
        "first_seen": state.first_seen,
        "last_seen": state.last_seen,
        "last_active": state.last_active,
    }
