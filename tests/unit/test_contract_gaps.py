"""Gaps of the input contract closed by issue 17: records without a key, and dead-letter texts
that give times as RFC 3339 rather than bare epoch milliseconds."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from services.models import Stage as ApiStage
from streams.core.contract import (
    InvalidEvent,
    Reason,
    describe_ts,
    parse_event,
    tombstone_key,
)
from streams.core.engine import TooLate, apply_event
from streams.core.eventtime import DAY_MS, HOUR_MS, format_ts, parse_ts
from streams.core.lifecycle import Stage
from streams.core.policy import Policy

from .pulse_testkit import BASE, at

NOW = BASE + DAY_MS  # 2026-11-23T00:00:00Z
MIN_TS = 946_684_800_000  # 2000-01-01T00:00:00Z
SKEW = 300_000
POLICY = Policy()
RFC3339 = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z")


def raw(**fields: Any) -> bytes:
    doc = {"event_id": "e1", "user_id": "u1", "type": "page_view", "ts": at(hours=10)}
    doc.update(fields)
    return json.dumps(doc).encode()


def parse(data: bytes, key: bytes | None, *, require_key: bool, now: int = NOW) -> Any:
    return parse_event(
        data,
        key,
        now_ms=now,
        min_ts_ms=MIN_TS,
        max_future_skew_ms=SKEW,
        max_bytes=4096,
        require_key=require_key,
    )


def rejection(data: bytes, key: bytes | None = None, *, require_key: bool = True) -> InvalidEvent:
    with pytest.raises(InvalidEvent) as info:
        parse(data, key, require_key=require_key)
    return info.value


# --------------------------------------------------------------------------- missing keys


def test_a_record_without_a_key_is_a_missing_key_dead_letter_naming_the_user() -> None:
    err = rejection(raw(), None)
    assert err.reason == Reason.MISSING_KEY == "missing_key"
    assert err.user_id == "u1"  # so the record can be re-published with its key
    assert "no key" in err.detail and "user id" in err.detail


def test_a_keyed_record_is_accepted_where_the_key_is_required() -> None:
    assert parse(raw(), b"u1", require_key=True).user_id == "u1"


def test_callers_that_set_the_key_later_may_validate_without_one() -> None:
    # The API's ingest validates before it sets the key; replay and fit read files.
    assert parse(raw(), None, require_key=False).user_id == "u1"


def test_an_empty_key_is_a_key_not_matching_the_user_not_a_missing_one() -> None:
    assert rejection(raw(), b"").reason == Reason.KEY_MISMATCH


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"{cut off", Reason.INVALID_JSON),
        (b"[1]", Reason.NOT_AN_OBJECT),
        (raw(type="Page View"), Reason.INVALID_VALUE),
    ],
)
def test_a_keyless_record_with_a_bad_document_is_rejected_for_the_document(
    data: bytes, reason: str
) -> None:
    assert rejection(data, None).reason == reason


def test_a_tombstone_erases_the_user_its_key_names() -> None:
    assert tombstone_key(b"u1") == b"u1"
    assert tombstone_key(bytearray(b"u1")) == b"u1"


@pytest.mark.parametrize(("key", "said"), [(None, "no key"), (b"", "an empty key")])
def test_a_tombstone_without_a_key_is_a_missing_key_dead_letter(
    key: bytes | None, said: str
) -> None:
    with pytest.raises(InvalidEvent) as info:
        tombstone_key(key)
    assert info.value.reason == Reason.MISSING_KEY
    assert said in info.value.detail and "tombstone" in info.value.detail
    assert info.value.user_id is None


# --------------------------------------------------------------------------- times in details


def test_a_time_before_the_range_is_named_in_rfc3339_with_the_bound() -> None:
    err = rejection(raw(ts="1999-12-31T23:59:59.999Z"), b"u1")
    assert err.reason == Reason.TIMESTAMP_OUT_OF_RANGE
    assert err.detail == (
        "ts 1999-12-31T23:59:59.999Z (946684799999 ms) is before the earliest accepted time "
        "2000-01-01T00:00:00.000Z (946684800000 ms)"
    )


def test_a_time_in_seconds_gets_a_hint() -> None:
    seconds = at(hours=10) // 1000
    err = rejection(raw(ts=seconds), b"u1")
    assert f"{format_ts(seconds)} ({seconds} ms)" in err.detail
    assert "looks like seconds" in err.detail


def test_a_time_after_the_range_is_named_with_the_clock_and_skew() -> None:
    err = rejection(raw(ts=NOW + SKEW + 1), b"u1")
    assert err.detail.startswith(
        "ts 2026-11-23T00:05:00.001Z (1795392300001 ms) is after the latest accepted time, the "
        "receiver's clock plus 300 s: 2026-11-23T00:05:00.000Z (1795392300000 ms)"
    )
    assert "seconds" not in err.detail


@pytest.mark.parametrize("ts", [10**30, -(10**30), 253_402_300_800_000, -62_135_596_800_001])
def test_times_without_a_calendar_date_keep_the_number(ts: int) -> None:
    err = rejection(raw(ts=ts), b"u1")
    assert err.reason == Reason.TIMESTAMP_OUT_OF_RANGE
    assert f"ts {ts} ms (outside the years 1-9999)" in err.detail


@given(st.integers(min_value=-62_135_596_800_000, max_value=253_402_300_799_999))
def test_describe_ts_gives_the_rfc3339_time_that_parses_back(ts: int) -> None:
    text, number = describe_ts(ts).split(" ", 1)
    assert RFC3339.fullmatch(text)
    assert number == f"({ts} ms)"
    assert parse_ts(text) == ts


def test_the_too_late_detail_names_both_times_in_rfc3339() -> None:
    first = parse(raw(ts=at(days=5)), b"u1", require_key=True, now=at(days=6))
    state = apply_event(None, first, POLICY).state
    late = parse(raw(event_id="e2", ts=at(days=1)), b"u1", require_key=True, now=at(days=6))
    with pytest.raises(TooLate) as info:
        apply_event(state, late, POLICY)
    cutoff = at(days=5) - 48 * HOUR_MS
    assert info.value.reason == Reason.TOO_LATE
    assert info.value.detail == (
        f"event time {format_ts(at(days=1))} ({at(days=1)} ms) is before {format_ts(cutoff)} "
        f"({cutoff} ms), the user's event-time clock minus the allowed lateness: an event this "
        "late is not applied"
    )


# --------------------------------------------------------------------------- the API's stages


def test_the_api_stages_are_the_lifecycle_stages_in_order() -> None:
    assert tuple(s.value for s in ApiStage) == Stage.ALL
