"""Event-time order of replay records: in memory, or merged from sorted runs in temporary files."""

from __future__ import annotations

import random
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from streams.offline.ordering import Entry, entry, in_event_time

from .pulse_testkit import PROPERTY


def entries(n: int, seed: int) -> list[Entry]:
    """Entries with many ties: few times and users, repeated event ids, identical records."""
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        user = rng.choice(("ann", "bob", "cy"))
        eid = rng.choice(("e1", "e2", "e3"))
        key = rng.choice((None, b"", user.encode()))
        out.append(entry(rng.randint(-3, 3), user, eid, key, rng.choice((b"{}", b"{ }"))))
    return out


def sort_in(items: list[Entry], run_records: int, tmp_path: Path | None = None) -> list[Entry]:
    with in_event_time(items, run_records=run_records, tmp_dir=tmp_path) as ordered:
        return list(ordered)


@pytest.mark.parametrize("run_records", [1, 2, 3, 50])
def test_the_external_sort_gives_the_in_memory_order(run_records: int, tmp_path: Path) -> None:
    items = entries(200, seed=run_records)
    assert sort_in(items, run_records, tmp_path) == sort_in(items, 10_000) == sorted(items)
    assert list(tmp_path.iterdir()) == []


def test_more_runs_than_files_merged_at_once_are_merged_in_stages(tmp_path: Path) -> None:
    items = entries(1_000, seed=9)  # 1000 runs of one record: more than the fan-in of 128
    assert sort_in(items, 1, tmp_path) == sorted(items)
    assert list(tmp_path.iterdir()) == []


@PROPERTY
@given(seed=st.integers(0, 10_000), n=st.integers(0, 40), run_records=st.integers(1, 7))
def test_any_order_of_the_same_entries_comes_out_the_same(
    seed: int, n: int, run_records: int
) -> None:
    items = entries(n, seed)
    shuffled = list(items)
    random.Random(seed).shuffle(shuffled)
    assert sort_in(shuffled, run_records) == sort_in(items, 10_000)


def test_event_time_comes_first_and_a_missing_key_stays_missing() -> None:
    late = entry(5, "ann", "a", b"ann", b"{}")
    no_key = entry(1, "bob", "b", None, b"{}")
    empty_key = entry(1, "bob", "b", b"", b"{}")
    got = sort_in([late, empty_key, no_key], 1)
    assert got == [no_key, empty_key, late]
    assert [e.record for e in got] == [(None, b"{}"), (b"", b"{}"), (b"ann", b"{}")]


def test_the_run_files_are_removed_when_the_consumer_fails(tmp_path: Path) -> None:
    with pytest.raises(RuntimeError):
        with in_event_time(entries(30, 1), run_records=4, tmp_dir=tmp_path) as ordered:
            next(ordered)
            assert len(list(tmp_path.iterdir())) == 1  # the runs' directory, while merging
            raise RuntimeError("the replay failed")
    assert list(tmp_path.iterdir()) == []


def test_the_run_files_are_removed_when_reading_the_input_fails(tmp_path: Path) -> None:
    def failing() -> Iterator[Entry]:
        yield from entries(10, 2)
        raise OSError("disk gone")

    with pytest.raises(OSError, match="disk gone"):
        with in_event_time(failing(), run_records=3, tmp_dir=tmp_path) as ordered:
            list(ordered)
    assert list(tmp_path.iterdir()) == []


def test_an_empty_input_gives_nothing_and_a_run_size_below_one_is_refused() -> None:
    assert sort_in([], 1) == []
    with pytest.raises(ValueError, match="run_records"):
        sort_in([], 0)
