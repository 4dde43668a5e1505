"""The retention moves the worker hands the view script (streams.view.writer.retention_shift)
are exactly the difference of the user's cells before and after: the script applies them in
place of decoding the part it holds, so any gap here would corrupt the cohort counts."""

from __future__ import annotations

from collections import Counter

from hypothesis import given
from hypothesis import strategies as st
from msgspec.structs import replace

from streams.core import retention
from streams.core.state import UserState
from streams.view.keys import retention_key
from streams.view.writer import retention_doc, retention_shift

BASE = UserState(user_id="u", first_seen=0, last_seen=0, last_active=0, evaluated_at=0)
bits = st.integers(min_value=0, max_value=(1 << 40) - 1)


def cohorted(day: int | None, day_bits: int, week_bits: int) -> UserState:
    return replace(BASE, cohort_day=day, cohort_day_bits=day_bits, cohort_week_bits=week_bits)


@given(
    day=st.integers(min_value=19_000, max_value=21_000),
    old=st.tuples(bits, bits),
    new=st.tuples(bits, bits),
)
def test_the_moves_are_the_difference_of_the_cells(
    day: int, old: tuple[int, int], new: tuple[int, int]
) -> None:
    before, after = cohorted(day, *old), cohorted(day, *new)
    shift = retention_shift("p", before, after)
    want: Counter[str] = Counter()
    for cell in retention.cells(before).keys() ^ retention.cells(after).keys():
        period, cohort, name = cell
        want[f"{retention_key('p', period, cohort)} {name}"] += (
            1 if cell in retention.cells(after) else -1
        )
    if not want:
        assert shift == []
        return
    assert shift[0] == retention_doc(before)  # the part the script must hold to use them
    got: Counter[str] = Counter()
    i = 1
    while i < len(shift):
        key, count = shift[i], shift[i + 1]
        pairs = shift[i + 2 : i + 2 + 2 * count]
        for name, delta in zip(pairs[::2], pairs[1::2], strict=True):
            assert delta in (1, -1)
            got[f"{key} {name}"] += delta
        i += 2 + 2 * count
    assert got == want


def test_no_moves_across_cohorts() -> None:
    """A user moved to another cohort (a late event) joins and leaves whole parts: the script
    does that itself, with the cohorts' indexes."""
    assert retention_shift("p", cohorted(20_000, 1, 1), cohorted(19_999, 3, 1)) == []
    assert retention_shift("p", cohorted(None, 0, 0), cohorted(20_000, 1, 1)) == []
