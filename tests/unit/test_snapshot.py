"""The rolling figures of a user, per configured window."""

from __future__ import annotations

from streams.core.contract import Event
from streams.core.engine import apply_event
from streams.core.eventtime import DAY_MS
from streams.core.policy import Policy
from streams.core.snapshot import snapshot, user_document

BASE = 1_795_305_600_000  # 2026-11-22T00:00:00Z


def _state(policy: Policy):  # type: ignore[no-untyped-def]
    events = [
        Event("a", "u", "page_view", BASE - 40 * DAY_MS),
        Event("b", "u", "purchase", BASE - 20 * DAY_MS, 12_345, True),
        Event("c", "u", "page_view", BASE - 5 * DAY_MS),
        Event("d", "u", "page_view", BASE - 5 * DAY_MS + 1),
        Event("e", "u", "points_earned", BASE),
        Event("f", "u", "session_start", BASE + 1000),
    ]
    state = None
    for i, ev in enumerate(events):
        state = apply_event(state, ev, policy, 0, i).state
    return state


def test_windows_count_events_spend_and_active_days() -> None:
    policy = Policy()
    snap = snapshot(_state(policy), BASE + 2000, policy)
    w = snap["windows"]
    assert list(w) == ["1d", "7d", "30d", "90d"]
    assert w["1d"] == {
        "events": 2,
        "by_type": {"points_earned": 1, "session_start": 1},
        "spend": 0.0,
        "active_days": 1,
    }
    assert w["7d"]["events"] == 4 and w["7d"]["active_days"] == 2
    assert w["30d"] == {
        "events": 5,
        "by_type": {"page_view": 2, "purchase": 1, "points_earned": 1, "session_start": 1},
        "spend": 123.45,
        "active_days": 3,
    }
    assert w["90d"]["events"] == 6 and w["90d"]["active_days"] == 4
    assert snap["lifetime"] == {"events": 6, "spend": 123.45}
    assert snap["first_seen"] == "2026-10-13T00:00:00.000Z"
    assert snap["last_active"] == "2026-11-22T00:00:01.000Z"
    assert snap["typical_gap_days"] == 15.0  # gaps 20, 15, 5 days


def test_windows_follow_the_policy() -> None:
    policy = Policy(windows_days=(7, 14, 30, 60), tier_window_days=60)
    snap = snapshot(_state(policy), BASE + 2000, policy)
    assert list(snap["windows"]) == ["7d", "14d", "30d", "60d"]
    assert snap["windows"]["14d"]["events"] == 4


def test_the_user_document_is_the_snapshot_at_the_users_own_clock() -> None:
    policy = Policy()
    state = _state(policy)
    doc = user_document(state, policy)
    assert doc["as_of"] == doc["updated_at"] == "2026-11-22T00:00:01.000Z"  # the last event
    assert {k: v for k, v in doc.items() if k != "updated_at"} == snapshot(
        state, state.evaluated_at, policy
    )
    assert doc["version"] == state.version
    # Read later, the same: nothing in it depends on when it is built.
    assert user_document(state, policy) == doc
