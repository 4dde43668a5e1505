"""RFM value segments (streams/core/rfm.py): scores, segments, and a user walking through them
as purchases come and time passes."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from streams.core.contract import InvalidEvent
from streams.core.engine import apply_event, sweep
from streams.core.eventtime import DAY_MS
from streams.core.outputs import Kind
from streams.core.policy import DEFAULT_SEGMENTS, Policy, RfmPolicy, load_policy
from streams.core.rfm import (
    PurchaseDay,
    add_purchase,
    assess,
    next_change,
    scores_of,
    segment_of,
)
from streams.offline.fit import rfm_bounds
from tests.unit.pulse_testkit import BASE, POLICY, PROPERTY, at, ev

D0 = BASE // DAY_MS
RFM = RfmPolicy()


@pytest.mark.parametrize(
    ("recency", "frequency", "cents", "scores"),
    [
        (0, 1, 1_000, "511"),
        (14, 2, 2_000, "521"),  # at a boundary: the score it bounds
        (15, 3, 2_001, "432"),
        (30, 5, 10_000, "443"),
        (31, 6, 10_001, "354"),
        (90, 100, 25_000, "354"),
        (91, 100, 25_001, "255"),
        (181, 1, 0, "111"),
    ],
)
def test_scores_against_the_boundaries(
    recency: int, frequency: int, cents: int, scores: str
) -> None:
    assert scores_of(recency, frequency, cents, RFM) == scores


@given(
    recency=st.integers(0, 364),  # within the 365-day window
    frequency=st.integers(1, 50),
    cents=st.integers(0, 100_000),
    high=st.integers(2, 5),
)
@PROPERTY
def test_assess_looks_up_what_scores_of_and_segment_of_compute(
    recency: int, frequency: int, cents: int, high: int
) -> None:
    # assess reads a table built from scores_of and segment_of (rfm._names_of) instead of
    # calling scores_of and segment_of: the two must agree for every score and policy.
    policy = Policy(rfm=RfmPolicy(high_score=high, monetary=(0.5, 20, 20, 99.99)))
    got = assess((PurchaseDay(D0 - recency, frequency, cents),), D0, policy)
    scores = scores_of(recency, frequency, cents, policy.rfm)
    assert (got.scores, got.segment) == (scores, segment_of(scores, policy.rfm))


def test_the_eight_segments_are_named_by_high_and_low_scores() -> None:
    days = (PurchaseDay(D0, 4, 30_000),)
    assert assess(days, D0 + 3, POLICY).segment == "important_value"  # 545
    assert assess(days, D0 + 100, POLICY).segment == "important_retention"  # 245
    assert assess((PurchaseDay(D0, 1, 30_000),), D0, POLICY).segment == "important_development"
    assert assess((PurchaseDay(D0, 1, 1_000),), D0 + 100, POLICY).segment == "general_win_back"
    assert assess((PurchaseDay(D0, 4, 1_000),), D0, POLICY).segment == "general_value"
    assert assess((), D0, POLICY).segment == "" and assess(days, D0 + 365, POLICY).scores == ""
    assert set(DEFAULT_SEGMENTS.values()) == set(RFM.segments.values())


def test_a_user_walks_through_the_segments_as_purchases_come_and_time_passes() -> None:
    state = None
    walk: list[tuple[float, str | None]] = []

    def take(outputs: tuple) -> None:  # type: ignore[type-arg]
        for o in outputs:
            if o.kind == Kind.RFM:
                walk.append(((o.ts - BASE) / DAY_MS, o.payload["to_segment"]))

    for day, cents in [(0, 3_000), (10, 8_000), (20, 15_000), (25, 2_000)]:
        r = apply_event(state, ev(at(day), "purchase", amount_cents=cents), POLICY)
        state = r.state
        take(r.outputs)
    assert state is not None and (state.rfm_scores, state.rfm_segment) == ("545", "important_value")
    r = sweep(state, at(400), POLICY)
    take(r.outputs)
    assert walk == [
        (0, "general_development"),  # one small purchase: 512
        (10, "important_development"),  # 524: spend high, one more purchase is not frequent
        (20, "important_value"),  # 535
        (116, "important_retention"),  # 91 days after the last purchase: recency 2
        (375, "important_win_back"),  # day 10's purchase leaves the 365-day window: F 2
        (385, "general_win_back"),  # day 20's leaves too: spend 20, F 1
        (390, None),  # the last purchase leaves the window
    ]
    assert r.state.rfm_days == () and r.state.rfm_segment == ""
    # A purchase brings the user back.
    back = apply_event(r.state, ev(at(401), "purchase", amount_cents=50_000), POLICY)
    assert [o.payload["from_segment"] for o in back.outputs if o.kind == Kind.RFM] == [None]
    assert back.state.rfm_segment == "important_development"


def test_purchases_only_count_and_a_duplicate_never_does() -> None:
    r = apply_event(None, ev(at(0), "page_view"), POLICY)
    assert r.state.rfm_segment == "" and not [o for o in r.outputs if o.kind == Kind.RFM]
    r = apply_event(r.state, ev(at(1), "purchase", amount_cents=500, event_id="p"), POLICY)
    again = apply_event(r.state, ev(at(1), "purchase", amount_cents=500, event_id="p"), POLICY)
    assert again.state.rfm_days == r.state.rfm_days == (PurchaseDay(D0 + 1, 1, 500),)


purchases = st.lists(
    st.tuples(st.integers(0, 500), st.integers(0, 40_000)), min_size=1, max_size=25
)


@PROPERTY
@given(purchases, st.sampled_from([Policy(), Policy(rfm=RfmPolicy(window_days=60))]))
def test_next_change_is_the_first_midnight_the_scores_change(
    bought: list[tuple[int, int]], policy: Policy
) -> None:
    days: tuple[PurchaseDay, ...] = ()
    for day, cents in bought:
        days = add_purchase(days, D0 + day, cents)
    today = D0 + max(d for d, _ in bought)
    now = assess(days, today, policy).scores
    found = next_change(days, today * DAY_MS + 5, policy)
    later = today + 1
    while later <= today + 2 * policy.rfm.window_days and assess(days, later, policy).scores == now:
        later += 1
    expected = None if assess(days, later, policy).scores == now else later * DAY_MS
    assert found == expected


# (day, hour, type, cents): purchases, sessions and page views of one user, in any order.
walks = st.lists(
    st.tuples(
        st.integers(0, 420),
        st.integers(0, 23),
        st.sampled_from(["purchase", "session_start", "page_view"]),
        st.integers(0, 40_000),
    ),
    min_size=1,
    max_size=30,
)


@PROPERTY
@given(walks, st.sampled_from([Policy(), Policy(rfm=RfmPolicy(window_days=60))]))
def test_the_remembered_scores_are_those_an_assessment_gives(
    walk: list[tuple[int, int, str, int]], policy: Policy
) -> None:
    """Evaluations without a new purchase keep the scores unassessed until their next change:
    after every event and sweep they are still what an assessment on that day gives."""
    state = None
    for n, (day, hour, etype, cents) in enumerate(walk):
        prev = state
        try:
            r = apply_event(
                state, ev(at(day, hour), etype, amount_cents=cents, event_id=f"e{n}"), policy
            )
        except InvalidEvent:  # too late for this user's clock
            continue
        for state in (r.state, sweep(r.state, at(day + 40), policy).state):
            fresh = assess(state.rfm_days, state.evaluated_at // DAY_MS, policy)
            assert (state.rfm_scores, state.rfm_segment) == (fresh.scores, fresh.segment)
        state = r.state if prev is None or n % 2 else sweep(r.state, at(day + 40), policy).state


def test_a_new_rfm_policy_applies_from_the_next_event_that_is_not_a_purchase() -> None:
    r = apply_event(None, ev(at(0), "purchase", amount_cents=3_000), POLICY)
    assert r.state.rfm_scores == "512" and r.state.rfm_until > 0
    # Recency boundaries of 0 days: a day after the purchase the recency score is 2, not 5.
    strict = POLICY.model_copy(update={"rfm": RfmPolicy(recency_days=(0, 0, 0, 180))})
    same = apply_event(r.state, ev(at(1), "page_view", event_id="v"), POLICY)
    assert same.state.rfm_scores == "512"
    moved = apply_event(r.state, ev(at(1), "page_view", event_id="v"), strict)
    assert moved.state.rfm_scores == "212"
    assert [o.payload["to_segment"] for o in moved.outputs if o.kind == Kind.RFM] == [
        segment_of("212", strict.rfm)
    ]


def test_fitted_boundaries_apply_where_the_policy_file_sets_none(tmp_path: Path) -> None:
    model = tmp_path / "model.json"
    model.write_text(
        json.dumps(
            {
                "r": 0.2,
                "alpha": 4.0,
                "a": 0.8,
                "b": 2.4,
                "rfm": {
                    "recency_days": [3, 9, 40, 100],
                    "frequency": [1, 1, 2, 4],
                    "monetary": [10, 20, 40, 90],
                },
            }
        )  # fmt: skip
    )
    assert load_policy(None, model).rfm.recency_days == (3, 9, 40, 100)
    own = tmp_path / "policy.toml"
    own.write_text("[rfm]\nfrequency = [2, 4, 6, 8]\nhigh_score = 4\n")
    policy = load_policy(own, model)
    assert policy.rfm.frequency == (2, 4, 6, 8) and policy.rfm.high_score == 4
    assert policy.rfm.monetary == (10, 20, 40, 90)
    with pytest.raises(ValueError, match="non-decreasing"):
        RfmPolicy(frequency=(3, 2, 4, 5))
    with pytest.raises(ValueError, match="must name each of"):
        RfmPolicy(segments={"hhh": "x"})


def test_rfm_bounds_are_numpys_quintiles() -> None:
    buys = {"a": [(100, 1_000)], "b": [(90, 500), (95, 700)], "c": [(10, 99_900)],
            "d": [(98, 100), (99, 100), (100, 100)]}  # fmt: skip
    bounds = rfm_bounds(buys, 100, 30)  # "c" bought before the window
    assert bounds is not None
    q = (0.2, 0.4, 0.6, 0.8)
    assert bounds["recency_days"] == pytest.approx(np.quantile([0, 5, 0], q))
    assert bounds["frequency"] == pytest.approx(np.quantile([1, 2, 3], q))
    assert bounds["monetary"] == pytest.approx(np.quantile([10.0, 12.0, 3.0], q))
    assert rfm_bounds(buys, 300, 30) is None
