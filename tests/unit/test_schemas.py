"""The JSON Schemas in streams/core/schemas/ describe exactly what Pulse accepts and publishes.

Inputs: documents parse_event accepts validate against user-event.schema.json, and documents it
rejects fail the schema wherever a schema can express the rule (the rules it cannot express are
listed, so a change on either side shows up here). Outputs: real decisions of the engine,
serialised by to_wire/encode_output, validate against their schemas; so do real dead letters.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterable
from datetime import datetime
from functools import cache
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from jsonschema import Draft202012Validator, FormatChecker
from jsonschema.validators import validator_for

import streams.core
from streams.core.churn import WarningReason
from streams.core.contract import InvalidEvent, Reason, parse_event, tombstone_key
from streams.core.dlq import dead_letter
from streams.core.engine import TooLate, apply_event, sweep
from streams.core.eventtime import DAY_MS, HOUR_MS
from streams.core.facts import Facts
from streams.core.holdout import Group
from streams.core.lifecycle import Stage, decide_stage
from streams.core.outputs import Kind, Output, encode_output, to_wire
from streams.core.policy import Policy, days_ms
from streams.core.tiers import decide_tier

SCHEMA_DIR = Path(streams.core.__file__).parent / "schemas"
DRAFT_2020_12 = "https://json-schema.org/draft/2020-12/schema"
USER_EVENT = "user-event.schema.json"
DEAD_LETTER = "dead-letter.schema.json"
OUTPUT_SCHEMAS = {
    Kind.LIFECYCLE: "lifecycle-changed.schema.json",
    Kind.WARNING: "churn-warning.schema.json",
    Kind.TIER: "tier-changed.schema.json",
    Kind.RECALL: "recall-reactivated.schema.json",
    Kind.RFM: "rfm-segment-changed.schema.json",
}
ALL_SCHEMAS = [USER_EVENT, *OUTPUT_SCHEMAS.values(), DEAD_LETTER]

FORMATS = FormatChecker()
# jsonschema checks "date-time" only when its optional rfc3339-validator dependency is present.
HAS_DATE_TIME = "date-time" in FORMATS.checkers
needs_date_time = pytest.mark.skipif(
    not HAS_DATE_TIME, reason="jsonschema has no date-time format checker here"
)

BASE = 1_795_305_600_000  # 2026-11-22T00:00:00Z, a UTC midnight
NOW = BASE + 30 * DAY_MS  # the parser's wall clock
POLICY = Policy()
MAX_BYTES = 65_536
SKEW_MS = 300_000


@cache
def load(name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((SCHEMA_DIR / name).read_text(encoding="utf-8"))
    return data


@cache
def validator(name: str) -> Draft202012Validator:
    return Draft202012Validator(load(name), format_checker=FORMATS)


def errors(name: str, instance: object) -> list[str]:
    return [e.message for e in validator(name).iter_errors(instance)]


def parse(raw: bytes, key: bytes | None = None, now: int = NOW, require_key: bool = False) -> Any:
    return parse_event(
        raw,
        key,
        now_ms=now,
        min_ts_ms=POLICY.min_valid_ts_ms,
        max_future_skew_ms=SKEW_MS,
        max_bytes=MAX_BYTES,
        require_key=require_key,
    )


def rejection(raw: bytes, key: bytes | None = None) -> str | None:
    """The reason parse_event rejects `raw` for, or None when it accepts it."""
    try:
        parse(raw, key)
    except InvalidEvent as exc:
        return exc.reason
    return None


# -- the schemas themselves ------------------------------------------------------------------


@pytest.mark.parametrize("name", ALL_SCHEMAS)
def test_each_schema_is_a_valid_draft_2020_12_schema(name: str) -> None:
    schema = load(name)
    assert schema["$schema"] == DRAFT_2020_12
    assert validator_for(schema) is Draft202012Validator
    Draft202012Validator.check_schema(schema, format_checker=FORMATS)  # also checks the regexes
    assert schema["title"] and schema["description"]
    assert schema["$id"].startswith("urn:pulse:schema:")


@pytest.mark.parametrize("name", ALL_SCHEMAS)
def test_the_examples_in_each_schema_validate(name: str) -> None:
    schema = load(name)
    assert schema["examples"]
    for example in schema["examples"]:
        assert errors(name, example) == []


@pytest.mark.parametrize("name", list(OUTPUT_SCHEMAS.values()) + [DEAD_LETTER])
def test_published_documents_are_closed(name: str) -> None:
    assert load(name)["additionalProperties"] is False


def test_the_input_contract_is_open_to_extra_fields() -> None:
    assert load(USER_EVENT)["additionalProperties"] is True


# -- input: user-event.schema.json -----------------------------------------------------------

TEN_AM = BASE + 10 * HOUR_MS

VALID_INPUTS: list[dict[str, Any]] = [
    {"event_id": "e1", "user_id": "u1", "type": "page_view", "ts": TEN_AM},
    {"event_id": "e1", "user_id": "u1", "type": "page_view", "ts": "2026-11-22T10:00:00Z"},
    {"event_id": "e1", "user_id": "u1", "type": "page_view", "ts": "2026-11-22T10:00:00.123Z"},
    {"event_id": "e1", "user_id": "u1", "type": "page_view", "ts": "2026-11-22T18:00:00+08:00"},
    {"event_id": "e1", "user_id": "u1", "type": "page_view", "ts": "2026-11-22T05:00:00-05:00"},
    {"event_id": "e1", "user_id": "u1", "type": "page_view", "ts": "2026-11-22t10:00:00z"},
    {"event_id": "e1", "user_id": "u1", "type": "page_view", "ts": "2026-11-22T10:00:00.1234567Z"},
    {"event_id": "e1", "user_id": "u1", "type": "page_view", "ts": str(TEN_AM)},
    {"event_id": "e1", "user_id": "u1", "type": "page_view", "ts": float(TEN_AM)},
    {"event_id": "e1", "user_id": "u1", "type": "purchase", "ts": TEN_AM, "amount": 19.99},
    {"event_id": "e1", "user_id": "u1", "type": "purchase", "ts": TEN_AM, "amount": 0},
    {"event_id": "e1", "user_id": "u1", "type": "purchase", "ts": TEN_AM, "amount": 1e9},
    {"event_id": "e1", "user_id": "u1", "type": "purchase", "ts": TEN_AM, "amount": "129.90"},
    {"event_id": "e1", "user_id": "u1", "type": "purchase", "ts": TEN_AM, "amount": "+5"},
    {"event_id": "e1", "user_id": "u1", "type": "purchase", "ts": TEN_AM, "amount": ".5"},
    {"event_id": "e1", "user_id": "u1", "type": "purchase", "ts": TEN_AM, "amount": "7."},
    {"event_id": "e1", "user_id": "u1", "type": "purchase", "ts": TEN_AM, "amount": "1000000000"},
    {"event_id": "e1", "user_id": "u1", "type": "purchase", "ts": TEN_AM, "amount": "999999999.99"},
    {
        "event_id": "e1",
        "user_id": "u1",
        "type": "purchase",
        "ts": TEN_AM,
        "amount": "01000000000.00",
    },
    {"event_id": "e1", "user_id": "u1", "type": "purchase", "ts": TEN_AM, "amount": None},
    {"event_id": "e1", "user_id": "u1", "type": "x", "ts": TEN_AM, "properties": None},
    {"event_id": "e1", "user_id": "u1", "type": "x", "ts": TEN_AM, "properties": {"a": [1]}},
    {"event_id": "e1", "user_id": "u1", "type": "x", "ts": TEN_AM, "extra": {"kept": True}},
    {"event_id": "e" * 128, "user_id": "ü" * 128, "type": "a" * 64, "ts": TEN_AM},
    {"event_id": "e1", "user_id": "u1", "type": "0checkout.completed:v2-x_y", "ts": TEN_AM},
    {"event_id": "e1", "user_id": "u1", "type": "page_view", "ts": POLICY.min_valid_ts_ms},
]


@pytest.mark.parametrize("doc", VALID_INPUTS, ids=lambda d: json.dumps(d)[-60:])
def test_events_parse_event_accepts_validate(doc: dict[str, Any]) -> None:
    raw = json.dumps(doc).encode()
    assert rejection(raw, doc["user_id"].encode()) is None
    assert errors(USER_EVENT, json.loads(raw)) == []


BASE_DOC: dict[str, Any] = {"event_id": "e1", "user_id": "u1", "type": "page_view", "ts": TEN_AM}
DROP = object()


def with_(**fields: Any) -> dict[str, Any]:
    d = dict(BASE_DOC)
    for name, value in fields.items():
        if value is DROP:
            del d[name]
        else:
            d[name] = value
    return d


# (label, document, the reason parse_event gives); the schema must reject each one too.
INVALID_INPUTS: list[tuple[str, Any, str]] = [
    ("array", [BASE_DOC], Reason.NOT_AN_OBJECT),
    ("string", "page_view", Reason.NOT_AN_OBJECT),
    ("null", None, Reason.NOT_AN_OBJECT),
    ("number", 42, Reason.NOT_AN_OBJECT),
    ("no user_id", with_(user_id=DROP), Reason.MISSING_FIELD),
    ("no event_id", with_(event_id=DROP), Reason.MISSING_FIELD),
    ("no type", with_(type=DROP), Reason.MISSING_FIELD),
    ("no ts", with_(ts=DROP), Reason.MISSING_FIELD),
    ("user_id number", with_(user_id=42), Reason.WRONG_TYPE),
    ("user_id null", with_(user_id=None), Reason.WRONG_TYPE),
    ("user_id empty", with_(user_id=""), Reason.INVALID_VALUE),
    ("user_id too long", with_(user_id="u" * 129), Reason.INVALID_VALUE),
    ("event_id object", with_(event_id={"id": 1}), Reason.WRONG_TYPE),
    ("event_id empty", with_(event_id=""), Reason.INVALID_VALUE),
    ("event_id too long", with_(event_id="e" * 129), Reason.INVALID_VALUE),
    ("type number", with_(type=5), Reason.WRONG_TYPE),
    ("type empty", with_(type=""), Reason.INVALID_VALUE),
    ("type too long", with_(type="a" * 65), Reason.INVALID_VALUE),
    ("type upper case", with_(type="Page_View"), Reason.INVALID_VALUE),
    ("type with space", with_(type="page view"), Reason.INVALID_VALUE),
    ("type starts with -", with_(type="-page"), Reason.INVALID_VALUE),
    ("type starts with _", with_(type="_page"), Reason.INVALID_VALUE),
    ("type with slash", with_(type="page/view"), Reason.INVALID_VALUE),
    ("ts boolean", with_(ts=True), Reason.WRONG_TYPE),
    ("ts fractional millis", with_(ts=TEN_AM + 0.5), Reason.WRONG_TYPE),
    ("ts array", with_(ts=[TEN_AM]), Reason.WRONG_TYPE),
    ("ts object", with_(ts={"ms": TEN_AM}), Reason.WRONG_TYPE),
    ("ts null", with_(ts=None), Reason.WRONG_TYPE),
    ("ts words", with_(ts="yesterday"), Reason.WRONG_TYPE),
    ("ts without offset", with_(ts="2026-11-22T10:00:00"), Reason.WRONG_TYPE),
    ("ts date only", with_(ts="2026-11-22"), Reason.WRONG_TYPE),
    ("ts hour 25", with_(ts="2026-11-22T25:00:00Z"), Reason.WRONG_TYPE),
    ("ts month 13", with_(ts="2026-13-22T10:00:00Z"), Reason.WRONG_TYPE),
    ("ts leap second", with_(ts="2026-12-31T23:59:60Z"), Reason.WRONG_TYPE),
    ("ts negative millis string", with_(ts="-1795341600000"), Reason.WRONG_TYPE),
    ("ts zero", with_(ts=0), Reason.TIMESTAMP_OUT_OF_RANGE),
    ("ts in seconds", with_(ts=TEN_AM // 1000), Reason.TIMESTAMP_OUT_OF_RANGE),
    ("ts before 2000", with_(ts=POLICY.min_valid_ts_ms - 1), Reason.TIMESTAMP_OUT_OF_RANGE),
    ("ts negative", with_(ts=-TEN_AM), Reason.TIMESTAMP_OUT_OF_RANGE),
    ("ts 1999 string", with_(ts="1999-12-31T00:00:00Z"), Reason.TIMESTAMP_OUT_OF_RANGE),
    ("ts seconds string", with_(ts=str(TEN_AM // 1000)), Reason.TIMESTAMP_OUT_OF_RANGE),
    ("amount negative", with_(amount=-1), Reason.INVALID_VALUE),
    ("amount negative cent", with_(amount=-0.01), Reason.INVALID_VALUE),
    ("amount too large", with_(amount=1_000_000_000.01), Reason.INVALID_VALUE),
    ("amount huge", with_(amount=1e300), Reason.INVALID_VALUE),
    ("amount negative string", with_(amount="-5"), Reason.INVALID_VALUE),
    ("amount words", with_(amount="ten"), Reason.INVALID_VALUE),
    ("amount NaN string", with_(amount="NaN"), Reason.INVALID_VALUE),
    ("amount Infinity string", with_(amount="Infinity"), Reason.INVALID_VALUE),
    ("amount too large string", with_(amount="1000000000.01"), Reason.INVALID_VALUE),
    ("amount too many digits", with_(amount="12345678901"), Reason.INVALID_VALUE),
    ("amount empty string", with_(amount=""), Reason.INVALID_VALUE),
    ("amount boolean", with_(amount=True), Reason.WRONG_TYPE),
    ("amount array", with_(amount=[5]), Reason.WRONG_TYPE),
    ("amount object", with_(amount={"value": 5}), Reason.WRONG_TYPE),
    ("properties array", with_(properties=[1, 2]), Reason.WRONG_TYPE),
    ("properties string", with_(properties="a=b"), Reason.WRONG_TYPE),
    ("properties number", with_(properties=3), Reason.WRONG_TYPE),
    ("properties boolean", with_(properties=False), Reason.WRONG_TYPE),
]

# Only the date-time format (not the pattern) can see that these dates do not exist.
FORMAT_ONLY_INPUTS: list[tuple[str, Any, str]] = [
    ("ts 30 February", with_(ts="2026-02-30T10:00:00Z"), Reason.WRONG_TYPE),
    ("ts 31 April", with_(ts="2026-04-31T10:00:00Z"), Reason.WRONG_TYPE),
    ("ts 29 February of a common year", with_(ts="2026-02-29T10:00:00Z"), Reason.WRONG_TYPE),
]


@pytest.mark.parametrize(
    ("label", "doc", "reason"), INVALID_INPUTS, ids=[c[0] for c in INVALID_INPUTS]
)
def test_events_parse_event_rejects_fail_the_schema(label: str, doc: Any, reason: str) -> None:
    raw = json.dumps(doc).encode()
    assert rejection(raw, b"u1") == reason
    assert errors(USER_EVENT, json.loads(raw)), f"the schema accepts: {label}"


@needs_date_time
@pytest.mark.parametrize(
    ("label", "doc", "reason"), FORMAT_ONLY_INPUTS, ids=[c[0] for c in FORMAT_ONLY_INPUTS]
)
def test_impossible_dates_fail_the_date_time_format(label: str, doc: Any, reason: str) -> None:
    raw = json.dumps(doc).encode()
    assert rejection(raw, b"u1") == reason
    assert errors(USER_EVENT, json.loads(raw)), f"the schema accepts: {label}"


def test_not_json_at_all_is_rejected_before_any_schema_applies() -> None:
    for raw in (b"", b"{", b'{"event_id": "e1",}', b"\xff\xfe{}", b"NaN"):
        assert rejection(raw) == Reason.INVALID_JSON


# Rules that depend on the record, the worker's clock or its configuration rather than on the
# document: the schema cannot express them (its description lists them), parse_event enforces.
def test_rules_outside_the_document_are_enforced_by_parse_event_only() -> None:
    cases: list[tuple[dict[str, Any], bytes | None, str]] = [
        (with_(ts=NOW + SKEW_MS + 1), b"u1", Reason.TIMESTAMP_OUT_OF_RANGE),
        (with_(ts=NOW + 365 * DAY_MS), None, Reason.TIMESTAMP_OUT_OF_RANGE),
        (with_(), b"someone-else", Reason.KEY_MISMATCH),
        (with_(properties={"blob": "x" * MAX_BYTES}), b"u1", Reason.PAYLOAD_TOO_LARGE),
    ]
    for doc, key, reason in cases:
        raw = json.dumps(doc).encode()
        assert rejection(raw, key) == reason
        assert errors(USER_EVENT, doc) == []
    # The key's presence: the worker requires it (the API's ingest sets it after validating).
    with pytest.raises(InvalidEvent) as info:
        parse(json.dumps(with_()).encode(), None, require_key=True)
    assert info.value.reason == Reason.MISSING_KEY
    assert errors(USER_EVENT, with_()) == []


# Spellings parse_event tolerates but the contract does not promise: the schema keeps senders
# to the documented forms (stricter is safe: nothing the schema allows is rejected).
LENIENT_PARSER_ONLY: list[dict[str, Any]] = [
    with_(ts=f" {TEN_AM} "),
    with_(ts="2026-11-22 10:00:00Z"),
    with_(ts="20261122T100000Z"),
    with_(ts="2026-11-22T10:00Z"),
    with_(ts=str(POLICY.min_valid_ts_ms)),  # 12 digits: the schema wants 13 or more
    with_(amount="1e3"),
    with_(amount="-0"),
    with_(amount=" 5 "),
    with_(amount="1_000"),
]


@pytest.mark.parametrize("doc", LENIENT_PARSER_ONLY, ids=lambda d: repr(d.get("amount", d["ts"])))
def test_the_schema_is_stricter_than_parse_event_about_spellings(doc: dict[str, Any]) -> None:
    raw = json.dumps(doc).encode()
    assert rejection(raw, b"u1") is None
    assert errors(USER_EVENT, doc)


def test_every_invalid_case_still_has_a_valid_twin() -> None:
    # Guards the tables above: the base document itself is fine, so each case fails for the
    # one field it changes.
    assert rejection(json.dumps(BASE_DOC).encode(), b"u1") is None
    assert errors(USER_EVENT, BASE_DOC) == []


# Property tests: documents built from a mix of good and bad field values.
_ABSENT = object()
_ids = st.one_of(st.text(max_size=130), st.integers(), st.none(), st.just(_ABSENT))
_types = st.one_of(
    st.from_regex(r"\A[a-z0-9][a-z0-9_.:-]{0,70}\Z"),
    st.text(max_size=12),
    st.integers(),
    st.just(_ABSENT),
)
_datetimes = st.datetimes(
    min_value=datetime(2000, 1, 2),
    max_value=datetime(2090, 1, 1),
    timezones=st.timezones(),
)
_ts = st.one_of(
    st.integers(min_value=-(2**40), max_value=3_000_000_000_000),
    st.floats(min_value=-1e13, max_value=3e12, allow_nan=False),
    _datetimes.map(lambda d: d.isoformat()),
    _datetimes.map(lambda d: d.isoformat(timespec="milliseconds").replace("+00:00", "Z")),
    st.integers(min_value=0, max_value=3_000_000_000_000).map(str),
    st.text(max_size=30),
    st.booleans(),
    st.none(),
    st.just(_ABSENT),
)
_amounts = st.one_of(
    st.integers(min_value=-10, max_value=2_000_000_000),
    st.floats(min_value=-10, max_value=2e9, allow_nan=False),
    st.decimals(min_value=-10, max_value=2_000_000_000, places=2).map(str),
    st.from_regex(r"\A\+?[0-9]{0,12}(\.[0-9]{0,3})?\Z"),
    st.text(max_size=12),
    st.booleans(),
    st.none(),
    st.just(_ABSENT),
)
_props = st.one_of(
    st.dictionaries(st.text(max_size=5), st.integers(), max_size=3),
    st.lists(st.integers(), max_size=2),
    st.text(max_size=5),
    st.none(),
    st.just(_ABSENT),
)


def _assemble(**fields: Any) -> dict[str, Any]:
    return {k: v for k, v in fields.items() if v is not _ABSENT}


_good_docs = st.builds(
    _assemble,
    event_id=st.text(min_size=1, max_size=128),
    user_id=st.text(min_size=1, max_size=128),
    type=st.from_regex(r"\A[a-z0-9][a-z0-9_.:-]{0,63}\Z"),
    ts=st.one_of(
        st.integers(min_value=POLICY.min_valid_ts_ms, max_value=NOW),
        st.datetimes(
            min_value=datetime(2000, 1, 2),
            max_value=datetime(2026, 12, 1),
            timezones=st.timezones(),
        ).map(lambda d: d.isoformat()),
    ),
    amount=st.one_of(
        st.just(_ABSENT),
        st.none(),
        st.decimals(min_value=0, max_value=1_000_000_000, places=2).map(str),
        st.decimals(min_value=0, max_value=1_000_000_000, places=2).map(float),
        st.integers(min_value=0, max_value=1_000_000_000),
    ),
    properties=st.one_of(st.just(_ABSENT), st.none(), st.dictionaries(st.text(), st.text())),
)


_odd_values = {
    "event_id": _ids,
    "user_id": _ids,
    "type": _types,
    "ts": _ts,
    "amount": _amounts,
    "properties": _props,
}
# A good document with one or two fields replaced by arbitrary (often invalid) values, so that
# plenty of the documents sit right at the edge of what the schema allows.
_mixed_docs = st.builds(
    lambda doc, odd: _assemble(**{**doc, **odd}),
    _good_docs,
    st.sets(st.sampled_from(sorted(_odd_values)), min_size=1, max_size=2).flatmap(
        lambda names: st.fixed_dictionaries({n: _odd_values[n] for n in names})
    ),
)

PROPERTY = settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
FAR_FUTURE = 4_000_000_000_000  # 2096: the schema has no upper bound on ts


@PROPERTY
@given(_mixed_docs)
def test_whatever_the_schema_accepts_parse_event_accepts(doc: dict[str, Any]) -> None:
    raw = json.dumps(doc).encode()
    if validator(USER_EVENT).is_valid(json.loads(raw)):
        try:
            parse(raw, None, now=FAR_FUTURE)
        except InvalidEvent as exc:  # pragma: no cover - the failure message is the point
            pytest.fail(f"schema accepts but parse_event rejects ({exc}): {raw!r}")


@PROPERTY
@given(_good_docs)
def test_well_formed_events_pass_both(doc: dict[str, Any]) -> None:
    raw = json.dumps(doc).encode()
    assert rejection(raw, doc["user_id"].encode()) is None
    assert errors(USER_EVENT, json.loads(raw)) == []


# -- outputs: real decisions of the engine ----------------------------------------------------


def event_bytes(user: str, n: int, etype: str, ts: int, amount: str | None = None) -> bytes:
    doc: dict[str, Any] = {"event_id": f"{user}-{n}", "user_id": user, "type": etype, "ts": ts}
    if amount is not None:
        doc["amount"] = amount
    return json.dumps(doc).encode()


def play(records: Iterable[bytes], end: int, policy: Policy) -> list[Output]:
    """Parse and apply records in event-time order, then let event time pass to `end`."""
    events = sorted((parse(r, now=end) for r in records), key=lambda e: e.ts)
    states: dict[str, Any] = {}
    outs: list[Output] = []
    for offset, e in enumerate(events):
        r = apply_event(states.get(e.user_id), e, policy, 0, offset)
        states[e.user_id] = r.state
        outs.extend(r.outputs)
    for state in states.values():
        outs.extend(sweep(state, end, policy).outputs)
    return outs


def day(n: float, hour: float = 9) -> int:
    return BASE + int(n * DAY_MS) + int(hour * HOUR_MS)


@cache
def scripted_outputs() -> tuple[Output, ...]:
    """A scripted life for a few users, chosen to produce every kind of decision.

    alice: signs up, visits daily for three weeks and buys her way to platinum, falls silent
    (at risk, dormant, churned), comes back (reactivated), falls silent again; her spend leaves
    the 90-day window, so she is downgraded. bob (under a policy with a longer silence floor):
    daily for a month, then one visit and a fading 7-day rate: an activity-drop warning.
    carol: warned after a silence and back within the attribution window.
    """
    alice: list[bytes] = [event_bytes("alice", 0, "signup", day(0, 8))]
    spend = {1: "120.00", 2: "450", 4: "900.50", 6: 800}
    for d in range(21):
        alice.append(event_bytes("alice", 100 + d, "session_start", day(d)))
        alice.append(event_bytes("alice", 200 + d, "page_view", day(d, 9.1)))
        if d in spend:
            alice.append(event_bytes("alice", 300 + d, "purchase", day(d, 9.2), str(spend[d])))
    alice.append(event_bytes("alice", 400, "points_earned", day(3), "50"))
    alice.append(event_bytes("alice", 401, "session_start", day(85)))
    outs = play(alice, day(130), POLICY)

    patient = Policy(at_risk_floor_days=10, at_risk_ceiling_days=14)
    bob = [event_bytes("bob", d, "session_start", day(d, 12)) for d in range(26)]
    bob.append(event_bytes("bob", 27, "session_start", day(27, 12)))
    outs += play(bob, day(45), patient)

    # carol: daily for ten days, silent (warned), back three days later: a recall reactivation.
    carol = [event_bytes("carol", d, "session_start", day(d)) for d in range(10)]
    carol.append(event_bytes("carol", 99, "page_view", day(15)))
    outs += play(carol, day(40), POLICY)
    return tuple(outs)


def wire(out: Output) -> dict[str, Any]:
    """The published bytes of an output, decoded again (what a consumer validates)."""
    doc: dict[str, Any] = json.loads(encode_output(out, out.ts + 1_234))
    assert doc == json.loads(json.dumps(to_wire(out, out.ts + 1_234)))
    return doc


def test_the_scripted_scenario_covers_every_kind_and_value() -> None:
    outs = scripted_outputs()
    assert {o.kind for o in outs} == set(Kind.ALL)
    lifecycle = [o.payload for o in outs if o.kind == Kind.LIFECYCLE]
    assert {p["to_stage"] for p in lifecycle} == set(Stage.ALL)
    warnings = [o.payload for o in outs if o.kind == Kind.WARNING]
    assert {w["reason"] for w in warnings} == {WarningReason.SILENCE, WarningReason.ACTIVITY_DROP}
    assert {w["stage_before"] for w in warnings} >= {"active", "reactivated"}
    assert {w["group"] for w in warnings} <= set(Group.ALL)
    recalls = [o.payload for o in outs if o.kind == Kind.RECALL]
    assert [(r["from_stage"], r["to_stage"]) for r in recalls] == [("at_risk", "active")]
    tiers = [o.payload for o in outs if o.kind == Kind.TIER]
    assert {t["direction"] for t in tiers} == {"initial", "upgrade", "downgrade"}
    assert {t["to_tier"] for t in tiers} == {"bronze", "silver", "gold", "platinum"}


@pytest.mark.parametrize("kind", Kind.ALL)
def test_real_outputs_validate_against_their_schema(kind: str) -> None:
    samples = [o for o in scripted_outputs() if o.kind == kind]
    assert samples
    for out in samples:
        doc = wire(out)
        assert errors(OUTPUT_SCHEMAS[kind], doc) == [], doc
        for other_kind, other in OUTPUT_SCHEMAS.items():
            if other_kind != kind:
                assert errors(other, doc), f"a {kind} document also passes {other}"


@pytest.mark.parametrize("kind", Kind.ALL)
def test_every_field_to_wire_produces_is_required(kind: str) -> None:
    schema = load(OUTPUT_SCHEMAS[kind])
    doc = wire(next(o for o in scripted_outputs() if o.kind == kind))
    assert set(schema["required"]) == set(doc) == set(schema["properties"])


def _mutations(doc: dict[str, Any]) -> Iterable[tuple[str, dict[str, Any]]]:
    def changed(**fields: Any) -> dict[str, Any]:
        return {**doc, **fields}

    yield "extra field", changed(extra=1)
    yield "schema version 2", changed(schema_version=2)
    yield "kind", changed(kind="something_else")
    yield "short key", changed(idempotency_key=doc["idempotency_key"][:31])
    yield "upper-case key", changed(idempotency_key=doc["idempotency_key"].upper())
    yield "event_time not UTC millis", changed(event_time="2026-11-22T10:00:00Z")
    yield "event_time_ms string", changed(event_time_ms=str(doc["event_time_ms"]))
    yield "emitted_at missing", {k: v for k, v in doc.items() if k != "emitted_at"}
    yield "user_id empty", changed(user_id="")


@pytest.mark.parametrize("kind", Kind.ALL)
def test_output_schemas_reject_what_to_wire_never_produces(kind: str) -> None:
    name = OUTPUT_SCHEMAS[kind]
    doc = wire(next(o for o in scripted_outputs() if o.kind == kind))
    for label, bad in _mutations(doc):
        assert errors(name, bad), label
    payload_mutations: dict[str, list[dict[str, Any]]] = {
        Kind.LIFECYCLE: [
            {"to_stage": "gone"},
            {"from_stage": ""},
            {"reason": "because"},
            {"figures": {**doc.get("figures", {}), "active_days_7d": 8}},
            {"figures": {**doc.get("figures", {}), "extra": 1}},
        ],
        Kind.WARNING: [
            {"reason": "returned"},
            {"risk_score": 1.5},
            {"stage_before": "at_risk"},
            {"tier": ""},
            {"group": "control"},
        ],
        Kind.RECALL: [
            {"group": "control"},
            {"warning_key": "x"},
            {"days_to_return": 0},
            {"from_stage": "active"},
            {"to_stage": "at_risk"},
            {"warning_reason": "returned"},
        ],
        Kind.TIER: [
            {"direction": "sideways"},
            {"direction": "initial", "from_tier": "gold"},
            {"direction": "upgrade", "from_tier": None},
            {"figures": {"spend_window": -1, "threshold": 0}},
        ],
        Kind.RFM: [
            {"to_segment": ""},
            {"scores": {"recency": 6, "frequency": 1, "monetary": 1}},
            {"scores": {"recency": 5, "frequency": 1}},
            {"figures": {**doc.get("figures", {}), "frequency": -1}},
        ],
    }
    for change in payload_mutations[kind]:
        assert errors(name, {**doc, **change}), change


@needs_date_time
def test_output_timestamps_are_checked_as_date_times() -> None:
    doc = wire(next(o for o in scripted_outputs() if o.kind == Kind.TIER))
    assert errors(OUTPUT_SCHEMAS[Kind.TIER], {**doc, "event_time": "2026-02-30T10:00:00.000Z"})


# The enums in the output schemas must cover everything the rules can decide. Hypothesis drives
# the pure decision functions over arbitrary figures, so a new stage, reason or direction in the
# code fails here even if no scripted scenario reaches it.
def _schema_enum(name: str, *path: str) -> set[Any]:
    node: Any = load(name)
    for step in path:
        node = node[step]
    if "$ref" in node:
        node = load(name)["$defs"][node["$ref"].rsplit("/", 1)[-1]]
    return set(node["enum"])


_facts = st.builds(
    Facts,
    at=st.integers(BASE, BASE + 400 * DAY_MS),
    age_ms=st.integers(0, 400 * DAY_MS),
    silence_ms=st.integers(0, 100 * DAY_MS),
    typical_gap_days=st.one_of(st.none(), st.floats(1, 60)),
    threshold_ms=st.integers(days_ms(1), days_ms(20)),
    active_days_7d=st.integers(0, 7),
    active_days_30d=st.integers(0, 30),
    spend_window_cents=st.integers(0, 10**9),
)


@PROPERTY
@given(
    prev=st.sampled_from([*Stage.ALL]),
    f=_facts,
    returned_at=st.one_of(st.none(), st.integers(BASE - 30 * DAY_MS, BASE + 400 * DAY_MS)),
)
def test_schema_enums_cover_every_stage_decision(
    prev: str, f: Facts, returned_at: int | None
) -> None:
    stage, reason = decide_stage(prev, f, returned_at, POLICY)
    lifecycle = OUTPUT_SCHEMAS[Kind.LIFECYCLE]
    assert stage in _schema_enum(lifecycle, "properties", "to_stage")
    assert prev in _schema_enum(lifecycle, "properties", "from_stage")
    assert reason in _schema_enum(lifecycle, "properties", "reason")
    if stage == Stage.AT_RISK and prev != Stage.AT_RISK:  # the engine emits a warning
        warning = OUTPUT_SCHEMAS[Kind.WARNING]
        assert reason in _schema_enum(warning, "properties", "reason")
        assert prev in _schema_enum(warning, "properties", "stage_before")


def test_a_first_decision_is_always_new_so_warnings_never_lack_a_stage_before() -> None:
    # On the first event of a user there is no silence and no history.
    first = Facts(BASE, 0, 0, None, days_ms(POLICY.at_risk_default_days), 1, 1, 0)
    assert decide_stage(None, first, None, POLICY) == (Stage.NEW, "first_seen")


@PROPERTY
@given(
    current=st.sampled_from(["", *POLICY.tier_names, "retired-tier"]),
    pending=st.one_of(st.none(), st.integers(BASE - 30 * DAY_MS, BASE)),
    spend=st.integers(0, 10**7),
)
def test_schema_enums_cover_every_tier_decision(
    current: str, pending: int | None, spend: int
) -> None:
    d = decide_tier(current, pending, spend, BASE, POLICY)
    tier = OUTPUT_SCHEMAS[Kind.TIER]
    if d.direction is not None:
        assert d.direction in _schema_enum(tier, "properties", "direction")
        assert d.reason in _schema_enum(tier, "properties", "reason")
        assert (d.direction == "initial") == (current == "")


def test_schema_enums_match_the_code_constants() -> None:
    lifecycle = OUTPUT_SCHEMAS[Kind.LIFECYCLE]
    assert _schema_enum(lifecycle, "properties", "to_stage") == set(Stage.ALL)
    assert _schema_enum(lifecycle, "properties", "from_stage") == {None, *Stage.ALL}
    assert _schema_enum(OUTPUT_SCHEMAS[Kind.WARNING], "properties", "reason") == {
        WarningReason.CHURN_PROBABILITY,
        WarningReason.SILENCE,
        WarningReason.ACTIVITY_DROP,
    }
    assert _schema_enum(OUTPUT_SCHEMAS[Kind.WARNING], "properties", "group") == set(Group.ALL)
    recall = OUTPUT_SCHEMAS[Kind.RECALL]
    assert _schema_enum(recall, "properties", "group") == set(Group.ALL)
    assert _schema_enum(recall, "properties", "warning_reason") == {
        WarningReason.CHURN_PROBABILITY,
        WarningReason.SILENCE,
        WarningReason.ACTIVITY_DROP,
    }
    reasons = {v for k, v in vars(Reason).items() if k.isupper()}
    assert _schema_enum(DEAD_LETTER, "properties", "reason") == reasons


# -- dead letters ------------------------------------------------------------------------------


def _dead_letters() -> Iterable[tuple[bytes | None, bytes | None, dict[str, Any]]]:
    """Real rejections of parse_event and the engine, turned into dead-letter documents."""
    samples: list[tuple[bytes | None, bytes | None]] = [
        (b"u1", b'{"event_id": "e1",'),  # cut off
        (None, b"\xff\xfe\x00garbage"),  # not UTF-8: original_text is null
        (b"u1", b"[1, 2]"),
        (b"\x00\x01binary-key", json.dumps(with_(user_id=DROP)).encode()),
        (b"u1", json.dumps(with_(amount=-5)).encode()),
        (b"u1", json.dumps(with_(ts="yesterday")).encode()),
        (b"u1", json.dumps(with_(ts=0)).encode()),
        (b"other", json.dumps(with_()).encode()),
        (b"u1", json.dumps(with_(properties={"x": "y" * MAX_BYTES})).encode()),
        (b"u1", b""),
        (b"u1", None),  # a tombstone
        (None, json.dumps(with_()).encode()),  # no key, as the worker reads the topic
        (None, None),  # a tombstone without a key
    ]
    for offset, (key, value) in enumerate(samples):
        try:
            if value is None and key is None:
                tombstone_key(key)
            parse(value or b"", key, require_key=True)
        except InvalidEvent as exc:
            yield (
                key,
                value,
                dead_letter(
                    reason=exc.reason,
                    detail=exc.detail,
                    user_id=exc.user_id,
                    topic="user-events",
                    partition=offset % 3,
                    offset=offset,
                    timestamp_ms=None if offset % 2 else NOW,
                    key=key,
                    value=value,
                    received_at_ms=NOW + offset,
                ),
            )
        else:  # pragma: no cover
            pytest.fail(f"parse_event accepted {value!r}")
    # Rejections after parsing: an event too late for its user, and a defect in Pulse.
    first = parse(json.dumps(with_(ts=BASE + 10 * DAY_MS)).encode())
    late = parse(json.dumps(with_(event_id="e2", ts=BASE)).encode())
    state = apply_event(None, first, POLICY).state
    with pytest.raises(TooLate) as too_late:
        apply_event(state, late, POLICY)
    raw = json.dumps(with_(event_id="e2", ts=BASE)).encode()
    for reason, detail in (
        (too_late.value.reason, too_late.value.detail),
        (Reason.INTERNAL_ERROR, repr(ZeroDivisionError("division by zero"))),
    ):
        yield (
            b"u1",
            raw,
            dead_letter(
                reason=reason,
                detail=detail,
                user_id="u1",
                topic="user-events",
                partition=0,
                offset=99,
                timestamp_ms=NOW,
                key=b"u1",
                value=raw,
                received_at_ms=NOW,
            ),
        )


def test_real_dead_letters_validate() -> None:
    seen: set[str] = set()
    for key, value, doc in _dead_letters():
        roundtrip = json.loads(json.dumps(doc))
        assert errors(DEAD_LETTER, roundtrip) == [], doc
        assert base64.b64decode(doc["original_b64"], validate=True) == (value or b"")
        if key is not None:
            assert base64.b64decode(doc["source"]["key_b64"], validate=True) == key
        seen.add(doc["reason"])
    assert seen == {v for k, v in vars(Reason).items() if k.isupper()}


def test_dead_letter_schema_rejects_malformed_records() -> None:
    _, _, doc = next(iter(_dead_letters()))
    source = doc["source"]
    bad: list[dict[str, Any]] = [
        {**doc, "reason": "whatever"},
        {**doc, "schema_version": 2},
        {**doc, "extra": True},
        {**doc, "original_b64": "not base64!"},
        {**doc, "original_b64": "abc"},  # unpadded
        {**doc, "user_id": ""},
        {**doc, "received_at": "yesterday"},
        {**doc, "source": {**source, "partition": -1}},
        {**doc, "source": {**source, "key_b64": 5}},
        {**doc, "source": {k: v for k, v in source.items() if k != "offset"}},
        {k: v for k, v in doc.items() if k != "original_text"},
    ]
    for instance in bad:
        assert errors(DEAD_LETTER, instance), instance
