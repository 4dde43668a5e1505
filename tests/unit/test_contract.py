"""The input contract: parse_event accepts what the schema allows and names what is wrong."""

from __future__ import annotations

import calendar
import json
from typing import Any

import pytest

from streams.core.contract import (
    MAX_ID_CHARS,
    MAX_TYPE_CHARS,
    Event,
    InvalidEvent,
    Reason,
    parse_event,
)
from streams.core.eventtime import DAY_MS, TimestampError, day_of, format_ts, parse_ts

from .pulse_testkit import BASE, at

NOW = BASE + DAY_MS  # the parser's wall clock: 2026-11-23T00:00:00Z
MIN_TS = 946_684_800_000  # 2000-01-01T00:00:00Z
SKEW = 300_000
MAX_BYTES = 4096
TEN_AM = at(hours=10)  # 2026-11-22T10:00:00Z

MISSING = object()


def doc(**fields: Any) -> dict[str, Any]:
    """A valid event document with some fields replaced (MISSING removes one)."""
    d: dict[str, Any] = {
        "event_id": "e1",
        "user_id": "u1",
        "type": "page_view",
        "ts": "2026-11-22T10:00:00Z",
    }
    for name, value in fields.items():
        if value is MISSING:
            d.pop(name, None)
        else:
            d[name] = value
    return d


def raw(**fields: Any) -> bytes:
    return json.dumps(doc(**fields)).encode()


def parse(data: bytes, key: bytes | None = None, *, now: int = NOW) -> Event:
    return parse_event(
        data, key, now_ms=now, min_ts_ms=MIN_TS, max_future_skew_ms=SKEW, max_bytes=MAX_BYTES
    )


def rejection(data: bytes, key: bytes | None = None) -> InvalidEvent:
    with pytest.raises(InvalidEvent) as info:
        parse(data, key)
    return info.value


def utc_ms(y: int, mo: int, d: int, h: int = 0, mi: int = 0, s: int = 0, ms: int = 0) -> int:
    """Epoch millis by integer arithmetic (no float on the way)."""
    return calendar.timegm((y, mo, d, h, mi, s)) * 1000 + ms


# --------------------------------------------------------------------------- accepted records


def test_a_valid_event_is_parsed_into_its_fields() -> None:
    e = parse(raw(properties={"page": "/home"}), b"u1")
    assert e == Event("e1", "u1", "page_view", TEN_AM, 0, False)


@pytest.mark.parametrize(
    ("ts", "expected"),
    [
        pytest.param("2026-11-22T10:00:00Z", TEN_AM, id="rfc3339-Z"),
        pytest.param("2026-11-22T10:00:00z", TEN_AM, id="rfc3339-lowercase-z"),
        pytest.param("2026-11-22t10:00:00Z", TEN_AM, id="rfc3339-lowercase-t"),
        pytest.param("2026-11-22T10:00:00+00:00", TEN_AM, id="rfc3339-zero-offset"),
        pytest.param("2026-11-22T18:00:00+08:00", TEN_AM, id="positive-offset"),
        pytest.param("2026-11-22T05:30:00-04:30", TEN_AM, id="negative-half-hour-offset"),
        pytest.param("2026-11-23T01:00:00+15:00", TEN_AM, id="offset-crossing-midnight"),
        pytest.param("2026-11-22T10:00:00.123Z", TEN_AM + 123, id="millis"),
        pytest.param("2026-11-22T10:00:00.5+05:30", at(hours=4, minutes=30) + 500, id="frac"),
        pytest.param("2026-11-22T10:00:00.999999Z", TEN_AM + 999, id="micros-truncated"),
        pytest.param(" 2026-11-22T10:00:00Z ", TEN_AM, id="surrounding-space"),
        pytest.param(TEN_AM, TEN_AM, id="epoch-millis-int"),
        pytest.param(str(TEN_AM), TEN_AM, id="epoch-millis-digit-string"),
        pytest.param(float(TEN_AM), TEN_AM, id="epoch-millis-whole-float"),
        pytest.param(MIN_TS, MIN_TS, id="lower-bound-inclusive"),
        pytest.param(NOW + SKEW, NOW + SKEW, id="future-skew-bound-inclusive"),
    ],
)
def test_accepted_timestamps(ts: object, expected: int) -> None:
    assert parse(raw(ts=ts)).ts == expected


@pytest.mark.parametrize(
    ("amount", "cents"),
    [
        pytest.param(12.34, 1234, id="json-decimal-exact"),
        pytest.param(0.1, 10, id="binary-unfriendly-decimal"),
        pytest.param("12.34", 1234, id="decimal-string"),
        pytest.param(5, 500, id="integer"),
        pytest.param(0, 0, id="zero"),
        pytest.param(1_000_000_000, 100_000_000_000, id="maximum-inclusive"),
    ],
)
def test_accepted_amounts_become_cents(amount: object, cents: int) -> None:
    e = parse(raw(amount=amount))
    assert (e.amount_cents, e.has_amount) == (cents, True)


@pytest.mark.parametrize("amount", [MISSING, None], ids=["absent", "null"])
def test_absent_or_null_amount_is_no_amount(amount: object) -> None:
    e = parse(raw(amount=amount))
    assert (e.amount_cents, e.has_amount) == (0, False)


@pytest.mark.parametrize("props", [MISSING, None, {}, {"a": [1, {"b": None}]}])
def test_properties_may_be_absent_null_or_any_object(props: object) -> None:
    assert parse(raw(properties=props)).event_id == "e1"


@pytest.mark.parametrize(
    "etype", ["page_view", "a", "0", "checkout.step:2", "x-y_z", "a" * MAX_TYPE_CHARS]
)
def test_accepted_type_strings(etype: str) -> None:
    assert parse(raw(type=etype)).type == etype


def test_ids_may_be_any_string_up_to_the_limit() -> None:
    long_id = "ü" * MAX_ID_CHARS  # the limit is in characters, not bytes
    e = parse(raw(user_id=long_id, event_id=long_id), long_id.encode())
    assert (e.user_id, e.event_id) == (long_id, long_id)


def test_payload_at_the_size_limit_is_accepted() -> None:
    base = raw()
    data = base[:-1] + b" " * (MAX_BYTES - len(base)) + b"}"
    assert len(data) == MAX_BYTES
    assert parse(data).user_id == "u1"


# --------------------------------------------------------------------------- rejections

LONG_ID = "x" * (MAX_ID_CHARS + 1)
LONG_TYPE = "a" * (MAX_TYPE_CHARS + 1)


@pytest.mark.parametrize(
    ("data", "reason", "named"),
    [
        # payload_too_large: the limit is stated
        pytest.param(
            raw(properties={"pad": "x" * MAX_BYTES}),
            Reason.PAYLOAD_TOO_LARGE,
            str(MAX_BYTES),
            id="too-large",
        ),
        # invalid_json
        pytest.param(b"", Reason.INVALID_JSON, "JSON", id="empty"),
        pytest.param(b"{", Reason.INVALID_JSON, "JSON", id="truncated"),
        pytest.param(b"not json", Reason.INVALID_JSON, "JSON", id="garbage"),
        pytest.param(b'{"user_id": "u1",}', Reason.INVALID_JSON, "JSON", id="trailing-comma"),
        pytest.param(b"{'user_id': 'u1'}", Reason.INVALID_JSON, "JSON", id="single-quotes"),
        pytest.param(b'{"ts": NaN}', Reason.INVALID_JSON, "JSON", id="bare-NaN"),
        pytest.param(b"\xff\xfe{}", Reason.INVALID_JSON, "JSON", id="invalid-utf8-lead-bytes"),
        pytest.param(b"[" * 2000 + b"]" * 2000, Reason.INVALID_JSON, "JSON", id="too-deep"),
        # not_an_object
        pytest.param(b"[]", Reason.NOT_AN_OBJECT, "array", id="array"),
        pytest.param(b'"e1"', Reason.NOT_AN_OBJECT, "string", id="string"),
        pytest.param(b"42", Reason.NOT_AN_OBJECT, "number", id="number"),
        pytest.param(b"null", Reason.NOT_AN_OBJECT, "null", id="null"),
        pytest.param(b"true", Reason.NOT_AN_OBJECT, "boolean", id="boolean"),
        # missing_field, one per required field
        pytest.param(raw(user_id=MISSING), Reason.MISSING_FIELD, "'user_id'", id="no-user_id"),
        pytest.param(raw(event_id=MISSING), Reason.MISSING_FIELD, "'event_id'", id="no-event_id"),
        pytest.param(raw(type=MISSING), Reason.MISSING_FIELD, "'type'", id="no-type"),
        pytest.param(raw(ts=MISSING), Reason.MISSING_FIELD, "'ts'", id="no-ts"),
        pytest.param(b"{}", Reason.MISSING_FIELD, "'user_id'", id="empty-object"),
        # wrong_type
        pytest.param(raw(user_id=7), Reason.WRONG_TYPE, "'user_id'", id="user_id-number"),
        pytest.param(raw(user_id=None), Reason.WRONG_TYPE, "'user_id'", id="user_id-null"),
        pytest.param(raw(event_id=7), Reason.WRONG_TYPE, "'event_id'", id="event_id-number"),
        pytest.param(raw(event_id=True), Reason.WRONG_TYPE, "'event_id'", id="event_id-bool"),
        pytest.param(raw(type=["x"]), Reason.WRONG_TYPE, "'type'", id="type-array"),
        pytest.param(raw(type={"a": 1}), Reason.WRONG_TYPE, "'type'", id="type-object"),
        pytest.param(raw(ts=True), Reason.WRONG_TYPE, "ts", id="ts-bool"),
        pytest.param(raw(ts=None), Reason.WRONG_TYPE, "ts", id="ts-null"),
        pytest.param(raw(ts=[TEN_AM]), Reason.WRONG_TYPE, "ts", id="ts-array"),
        pytest.param(raw(ts="yesterday"), Reason.WRONG_TYPE, "ts", id="ts-not-rfc3339"),
        pytest.param(raw(ts="2026-11-22T10:00:00"), Reason.WRONG_TYPE, "ts", id="ts-no-offset"),
        pytest.param(raw(ts="2026-11-22"), Reason.WRONG_TYPE, "ts", id="ts-date-only"),
        pytest.param(raw(ts=""), Reason.WRONG_TYPE, "ts", id="ts-empty"),
        pytest.param(raw(ts="-1000"), Reason.WRONG_TYPE, "ts", id="ts-signed-digit-string"),
        pytest.param(raw(ts=TEN_AM + 0.5), Reason.WRONG_TYPE, "ts", id="ts-fractional-millis"),
        pytest.param(
            raw(ts=MISSING)[:-1] + b', "ts": 1e400}',
            Reason.WRONG_TYPE,
            "ts",
            id="ts-overflows-float",
        ),
        pytest.param(raw(amount=True), Reason.WRONG_TYPE, "'amount'", id="amount-bool"),
        pytest.param(raw(amount=[1]), Reason.WRONG_TYPE, "'amount'", id="amount-array"),
        pytest.param(raw(amount={"v": 1}), Reason.WRONG_TYPE, "'amount'", id="amount-object"),
        pytest.param(raw(properties=[]), Reason.WRONG_TYPE, "'properties'", id="props-array"),
        pytest.param(raw(properties="x"), Reason.WRONG_TYPE, "'properties'", id="props-string"),
        pytest.param(raw(properties=1), Reason.WRONG_TYPE, "'properties'", id="props-number"),
        # invalid_value: strings
        pytest.param(raw(user_id=""), Reason.INVALID_VALUE, "'user_id'", id="user_id-empty"),
        pytest.param(raw(user_id=LONG_ID), Reason.INVALID_VALUE, "'user_id'", id="user_id-long"),
        pytest.param(raw(event_id=""), Reason.INVALID_VALUE, "'event_id'", id="event_id-empty"),
        pytest.param(raw(event_id=LONG_ID), Reason.INVALID_VALUE, "'event_id'", id="event_id-long"),
        pytest.param(raw(type=""), Reason.INVALID_VALUE, "'type'", id="type-empty"),
        pytest.param(raw(type=LONG_TYPE), Reason.INVALID_VALUE, "'type'", id="type-long"),
        pytest.param(raw(type="Page_View"), Reason.INVALID_VALUE, "'type'", id="type-upper"),
        pytest.param(raw(type="page view"), Reason.INVALID_VALUE, "'type'", id="type-space"),
        pytest.param(raw(type="_page"), Reason.INVALID_VALUE, "'type'", id="type-leading-_"),
        pytest.param(raw(type="-page"), Reason.INVALID_VALUE, "'type'", id="type-leading--"),
        pytest.param(raw(type="page/view"), Reason.INVALID_VALUE, "'type'", id="type-slash"),
        pytest.param(raw(type="pagé"), Reason.INVALID_VALUE, "'type'", id="type-non-ascii"),
        # invalid_value: amounts
        pytest.param(raw(amount=-1), Reason.INVALID_VALUE, "'amount'", id="amount-negative"),
        pytest.param(raw(amount="-0.01"), Reason.INVALID_VALUE, "'amount'", id="amount-neg-str"),
        pytest.param(raw(amount="NaN"), Reason.INVALID_VALUE, "'amount'", id="amount-NaN"),
        pytest.param(raw(amount="sNaN"), Reason.INVALID_VALUE, "'amount'", id="amount-sNaN"),
        pytest.param(raw(amount="Infinity"), Reason.INVALID_VALUE, "'amount'", id="amount-inf"),
        pytest.param(raw(amount="abc"), Reason.INVALID_VALUE, "'amount'", id="amount-not-number"),
        pytest.param(raw(amount=""), Reason.INVALID_VALUE, "'amount'", id="amount-empty-str"),
        pytest.param(
            raw(amount=1_000_000_000.01), Reason.INVALID_VALUE, "'amount'", id="amount-over-max"
        ),
        pytest.param(
            raw()[:-1] + b', "amount": 1e400}', Reason.INVALID_VALUE, "'amount'", id="amount-huge"
        ),
        pytest.param(
            raw(amount=10**30), Reason.INVALID_VALUE, "'amount'", id="amount-huge-integer"
        ),
        # timestamp_out_of_range
        pytest.param(
            raw(ts="1999-12-31T23:59:59.999Z"),
            Reason.TIMESTAMP_OUT_OF_RANGE,
            "ts",
            id="just-before-min",
        ),
        pytest.param(raw(ts=0), Reason.TIMESTAMP_OUT_OF_RANGE, "ts", id="epoch-zero"),
        pytest.param(
            raw(ts="1970-01-01T00:00:00Z"), Reason.TIMESTAMP_OUT_OF_RANGE, "ts", id="far-past"
        ),
        pytest.param(
            raw(ts=NOW + SKEW + 1), Reason.TIMESTAMP_OUT_OF_RANGE, "ts", id="just-beyond-skew"
        ),
        pytest.param(
            raw(ts="2100-01-01T00:00:00Z"), Reason.TIMESTAMP_OUT_OF_RANGE, "ts", id="far-future"
        ),
        pytest.param(raw(ts=10**30), Reason.TIMESTAMP_OUT_OF_RANGE, "ts", id="huge-integer"),
        pytest.param(raw(ts=-1), Reason.TIMESTAMP_OUT_OF_RANGE, "ts", id="negative-integer"),
    ],
)
def test_rejections_carry_a_reason_and_name_the_field(data: bytes, reason: str, named: str) -> None:
    err = rejection(data)
    assert err.reason == reason
    assert named in err.detail
    assert str(err) == f"{reason}: {err.detail}"


@pytest.mark.parametrize("key", [b"u2", b"", b"U1", b"u1 "])
def test_key_other_than_the_user_id_is_a_key_mismatch(key: bytes) -> None:
    err = rejection(raw(), key)
    assert err.reason == Reason.KEY_MISMATCH
    assert "key" in err.detail and "user id" in err.detail
    assert err.user_id == "u1"


def test_key_is_compared_with_the_utf8_user_id() -> None:
    assert parse(raw(user_id="zoë"), "zoë".encode()).user_id == "zoë"


def test_future_bound_follows_now() -> None:
    data = raw(ts=NOW + SKEW + 1)
    assert rejection(data).reason == Reason.TIMESTAMP_OUT_OF_RANGE
    assert parse(data, now=NOW + 1).ts == NOW + SKEW + 1


@pytest.mark.parametrize(
    ("data", "user_id"),
    [
        pytest.param(b"[]", None, id="before-user_id-is-known"),
        pytest.param(raw(user_id=MISSING), None, id="user_id-missing"),
        pytest.param(raw(event_id=MISSING), "u1", id="after-user_id-is-known"),
        pytest.param(raw(amount=-1), "u1", id="bad-amount"),
        pytest.param(raw(ts=0), "u1", id="bad-ts"),
    ],
)
def test_rejection_carries_the_user_id_once_known(data: bytes, user_id: str | None) -> None:
    assert rejection(data).user_id == user_id


def test_fields_are_checked_in_a_stable_order() -> None:
    # Several faults: the first in the documented order (user_id, event_id, type, ts, ...) wins.
    err = rejection(raw(event_id=MISSING, type="BAD", ts=0, amount=-1))
    assert (err.reason, "'event_id'" in err.detail) == (Reason.MISSING_FIELD, True)
    err = rejection(raw(type="BAD", ts=0, amount=-1))
    assert err.reason == Reason.INVALID_VALUE and "'type'" in err.detail
    err = rejection(raw(ts=0, amount=-1))
    assert err.reason == Reason.TIMESTAMP_OUT_OF_RANGE
    err = rejection(raw(amount=-1), b"someone-else")
    assert err.reason == Reason.INVALID_VALUE and "'amount'" in err.detail


# --------------------------------------------------------------------------- known defects


def test_invalid_utf8_inside_a_string_is_invalid_json() -> None:
    data = b'{"event_id": "e1", "user_id": "u\xff1", "type": "page_view", "ts": 1}'
    assert rejection(data).reason == Reason.INVALID_JSON


@pytest.mark.parametrize("ts", ["\u00b2", "\u2460"], ids=["superscript-two", "circled-one"])
def test_unicode_digit_like_ts_is_wrong_type(ts: str) -> None:
    assert rejection(raw(ts=ts)).reason == Reason.WRONG_TYPE


def test_type_with_a_trailing_newline_is_invalid() -> None:
    assert rejection(raw(type="page_view\n")).reason == Reason.INVALID_VALUE


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2004-07-15T05:39:36.761Z", utc_ms(2004, 7, 15, 5, 39, 36, 761)),
        ("2038-03-31T11:36:49.640Z", utc_ms(2038, 3, 31, 11, 36, 49, 640)),
    ],
)
def test_rfc3339_millis_are_exact(text: str, expected: int) -> None:
    # 2004 is inside the default accepted range (2000-01-01 .. now), so replays are affected.
    assert parse_ts(text) == expected
    assert parse(raw(ts=text), now=expected).ts == expected


# --------------------------------------------------------------------------- eventtime


@pytest.mark.parametrize(
    ("ms", "text"),
    [
        (0, "1970-01-01T00:00:00.000Z"),
        (BASE, "2026-11-22T00:00:00.000Z"),
        (TEN_AM + 7, "2026-11-22T10:00:00.007Z"),
        (BASE - 1, "2026-11-21T23:59:59.999Z"),
    ],
)
def test_format_ts_is_rfc3339_utc_millis(ms: int, text: str) -> None:
    assert format_ts(ms) == text
    assert parse_ts(text) == ms


@pytest.mark.parametrize(
    ("ms", "day"),
    [(BASE, BASE // DAY_MS), (BASE - 1, BASE // DAY_MS - 1), (BASE + DAY_MS - 1, BASE // DAY_MS)],
)
def test_day_of_is_the_utc_day_number(ms: int, day: int) -> None:
    assert day_of(ms) == day


@pytest.mark.parametrize("value", [True, None, 1.5, float("nan"), float("inf"), "soon", [1], b"1"])
def test_parse_ts_rejects_with_timestamp_error(value: object) -> None:
    with pytest.raises(TimestampError, match="ts"):
        parse_ts(value)
