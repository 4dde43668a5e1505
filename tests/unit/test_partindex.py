"""The worker's per-partition due-time index and stage/tier counts."""

from __future__ import annotations

import msgspec
from hypothesis import given
from hypothesis import strategies as st

from streams.core.checkpoints import NEVER
from streams.core.state import UserState, decode_summary, encode_state
from streams.worker.partindex import PartitionIndex


def _state(stage: str = "active", tier: str = "bronze", next_check: int = 100) -> UserState:
    return UserState(
        user_id="u",
        first_seen=0,
        last_seen=0,
        last_active=0,
        evaluated_at=0,
        stage=stage,
        tier=tier,
        next_check=next_check,
    )


keys = st.sampled_from([b"a", b"b", b"c", b"d", b"e"])
times = st.one_of(st.integers(0, 50), st.just(NEVER))


@given(st.lists(st.tuples(keys, times), max_size=60), st.integers(0, 50))
def test_pop_due_returns_exactly_the_keys_whose_latest_due_time_has_come(
    ops: list[tuple[bytes, int]], now: int
) -> None:
    index = PartitionIndex()
    latest: dict[bytes, int] = {}
    for key, t in ops:
        index.schedule(key, t)
        latest[key] = t
    due = index.pop_due(now)
    assert sorted(due) == sorted(k for k, t in latest.items() if t <= now)
    assert len(due) == len(set(due))
    # Popped keys are not due again until scheduled again.
    assert index.pop_due(NEVER - 1) == sorted(
        (k for k, t in latest.items() if now < t < NEVER), key=lambda k: (latest[k], k)
    )


def test_due_keys_come_earliest_first() -> None:
    index = PartitionIndex()
    for key, t in [(b"late", 30), (b"early", 10), (b"mid", 20)]:
        index.schedule(key, t)
    assert index.pop_due(25) == [b"early", b"mid"]


def test_the_heap_is_compacted_when_stale_entries_pile_up() -> None:
    index = PartitionIndex()
    for t in range(5000):
        index.schedule(b"one-user", t)
    assert len(index._heap) <= 2 * len(index) + 1025
    assert index.pop_due(10_000) == [b"one-user"]


def test_counts_follow_a_user_between_stages_and_tiers() -> None:
    index = PartitionIndex()
    first = _state("new", "bronze")
    index.put(b"u", None, first)
    index.put(b"u", first, _state("active", "silver"))
    assert +index.stages == {"active": 1}
    assert +index.tiers == {"silver": 1}
    index.put(b"u", _state("active", "silver"), None)
    assert +index.stages == {} and +index.tiers == {}
    assert index.pop_due(NEVER - 1) == []


users = st.lists(
    st.tuples(
        st.sampled_from(["new", "active", "at_risk"]),
        st.sampled_from(["bronze", "silver"]),
        times,
    ),
    max_size=40,
)


@given(users)
def test_a_rebuilt_index_is_the_one_kept_user_by_user(found: list[tuple[str, str, int]]) -> None:
    kept, rebuilt = PartitionIndex(), PartitionIndex()
    for i, (stage, tier, due) in enumerate(found):
        kept.put(b"%d" % i, None, _state(stage, tier, due))
        rebuilt.load(b"%d" % i, _state(stage, tier, due))
    rebuilt.seal()
    assert +rebuilt.stages == +kept.stages and +rebuilt.tiers == +kept.tiers
    assert rebuilt.next_check == kept.next_check
    assert rebuilt.pop_due(NEVER - 1) == kept.pop_due(NEVER - 1)


def test_rfm_segments_are_counted_per_partition() -> None:
    index = PartitionIndex()
    buyer = msgspec.structs.replace(_state(), rfm_segment="important_value")
    index.put(b"u", None, buyer)
    index.put(b"v", None, _state())
    assert +index.rfm == {"important_value": 1, "": 1}
    index.put(b"u", buyer, msgspec.structs.replace(buyer, rfm_segment="general_value"))
    assert +index.rfm == {"general_value": 1, "": 1}
    rebuilt = PartitionIndex()
    rebuilt.load(b"u", decode_summary(encode_state(buyer)))
    assert +rebuilt.rfm == {"important_value": 1}
