"""The input contract of `user-events`: parse and validate one raw record into an Event.

Mirrored by `streams/core/schemas/user-event.schema.json`. Every rejection carries a stable reason
code (for the dead-letter topic and the metrics) and a message that tells the sender what to fix.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from decimal import Decimal, InvalidOperation
from typing import Any

import msgspec

from streams.core.eventtime import TimestampError, format_ts, parse_ts

MAX_ID_CHARS = 128
MAX_TYPE_CHARS = 64
MAX_AMOUNT = Decimal("1000000000")
_TYPE_RE = re.compile(r"[a-z0-9][a-z0-9_.:-]*")
# Types seen to match _TYPE_RE: a set lookup instead of a match per event. Bounded, since
# the types come from the senders.
_VALID_TYPES: set[str] = set()
_VALID_TYPES_KEPT = 1024


class Reason:
    """Reason codes for rejected events (the `reason` field of dead-letter records)."""

    PAYLOAD_TOO_LARGE = "payload_too_large"
    INVALID_JSON = "invalid_json"
    NOT_AN_OBJECT = "not_an_object"
    MISSING_FIELD = "missing_field"
    WRONG_TYPE = "wrong_type"
    INVALID_VALUE = "invalid_value"
    TIMESTAMP_OUT_OF_RANGE = "timestamp_out_of_range"
    KEY_MISMATCH = "key_mismatch"
    MISSING_KEY = "missing_key"
    TOO_LATE = "too_late"
    INTERNAL_ERROR = "internal_error"


class InvalidEvent(Exception):
    """A record that does not satisfy the input contract."""

    def __init__(self, reason: str, detail: str, user_id: str | None = None) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail
        self.user_id = user_id


# gc=False: frozen, holding only numbers, strings and tuples of those or of other such structs,
# so never part of a reference cycle; untracked, its many short-lived copies do not set off
# garbage collections.
class Event(msgspec.Struct, frozen=True, gc=False):
    """A validated user event. `amount_cents` is the amount in hundredths of a currency unit."""

    event_id: str
    user_id: str
    type: str
    ts: int
    amount_cents: int = 0
    has_amount: bool = False


_decoder = msgspec.json.Decoder(float_hook=Decimal)


def _require_str(doc: dict[str, Any], name: str, limit: int, user_id: str | None) -> str:
    if name not in doc:
        raise InvalidEvent(Reason.MISSING_FIELD, f"required field '{name}' is missing", user_id)
    value = doc[name]
    if not isinstance(value, str):
        raise InvalidEvent(
            Reason.WRONG_TYPE, f"'{name}' must be a string, not {_json_type(value)}", user_id
        )
    if not value or len(value) > limit:
        raise InvalidEvent(
            Reason.INVALID_VALUE, f"'{name}' must be 1 to {limit} characters long", user_id
        )
    return value


def _str_field(doc: dict[str, Any], name: str, limit: int, user_id: str | None) -> str:
    """`_require_str`, with the check of a valid value first (the usual case) done inline."""
    value = doc.get(name)
    if type(value) is str and 0 < len(value) <= limit:
        return value
    return _require_str(doc, name, limit, user_id)


def _json_type(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float | Decimal):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    return "object"


def _amount_cents(value: object, user_id: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int | Decimal | str):
        raise InvalidEvent(
            Reason.WRONG_TYPE,
            f"'amount' must be a decimal number, not {_json_type(value)}",
            user_id,
        )
    try:
        amount = Decimal(value) if not isinstance(value, Decimal) else value
    except InvalidOperation:
        raise InvalidEvent(
            Reason.INVALID_VALUE, "'amount' is not a decimal number", user_id
        ) from None
    if not amount.is_finite():
        raise InvalidEvent(Reason.INVALID_VALUE, "'amount' must be finite", user_id)
    if amount < 0 or amount > MAX_AMOUNT:
        raise InvalidEvent(
            Reason.INVALID_VALUE, f"'amount' must be between 0 and {MAX_AMOUNT}", user_id
        )
    return int((amount * 100).to_integral_value())


def _decode_object(raw: bytes, max_bytes: int) -> dict[str, Any]:
    """The record's JSON object, within the size limit. Raises InvalidEvent."""
    if len(raw) > max_bytes:
        raise InvalidEvent(
            Reason.PAYLOAD_TOO_LARGE, f"event is {len(raw)} bytes, the limit is {max_bytes}"
        )
    try:
        doc = _decoder.decode(raw)
    except msgspec.DecodeError as exc:
        raise InvalidEvent(Reason.INVALID_JSON, f"not valid JSON: {exc}") from None
    except UnicodeDecodeError as exc:
        raise InvalidEvent(
            Reason.INVALID_JSON, f"not valid UTF-8: {exc.reason} at byte {exc.start}"
        ) from None
    except RecursionError:
        raise InvalidEvent(Reason.INVALID_JSON, "JSON nested too deeply") from None
    if not isinstance(doc, dict):
        raise InvalidEvent(
            Reason.NOT_AN_OBJECT, f"event must be a JSON object, not {_json_type(doc)}"
        )
    return doc


def _event_type(doc: dict[str, Any], user_id: str) -> str:
    etype = _str_field(doc, "type", MAX_TYPE_CHARS, user_id)
    if etype not in _VALID_TYPES:
        if not _TYPE_RE.fullmatch(etype):
            raise InvalidEvent(
                Reason.INVALID_VALUE,
                "'type' must be lower-case letters, digits and _ . : - (e.g. 'page_view')",
                user_id,
            )
        if len(_VALID_TYPES) < _VALID_TYPES_KEPT:
            _VALID_TYPES.add(etype)
    return etype


def _event_ts(
    doc: dict[str, Any], user_id: str, now_ms: int, min_ts_ms: int, max_future_skew_ms: int
) -> int:
    """The event time in epoch millis (given as millis or RFC 3339), within the accepted range."""
    if "ts" not in doc:
        raise InvalidEvent(Reason.MISSING_FIELD, "required field 'ts' is missing", user_id)
    raw_ts = doc["ts"]
    if type(raw_ts) is int:  # epoch millis, as most senders send it (not a bool)
        ts = raw_ts
    else:
        if isinstance(raw_ts, Decimal):
            raw_ts = float(raw_ts) if raw_ts.is_finite() else float("nan")
        try:
            ts = parse_ts(raw_ts)
        except TimestampError as exc:
            raise InvalidEvent(Reason.WRONG_TYPE, str(exc), user_id) from None
    if ts < min_ts_ms:
        hint = ""
        if min_ts_ms <= ts * 1000 <= now_ms + max_future_skew_ms:
            hint = " (it looks like seconds: send epoch milliseconds or an RFC 3339 time)"
        raise InvalidEvent(
            Reason.TIMESTAMP_OUT_OF_RANGE,
            f"ts {describe_ts(ts)} is before the earliest accepted time "
            f"{describe_ts(min_ts_ms)}{hint}",
            user_id,
        )
    latest = now_ms + max_future_skew_ms
    if ts > latest:
        raise InvalidEvent(
            Reason.TIMESTAMP_OUT_OF_RANGE,
            f"ts {describe_ts(ts)} is after the latest accepted time, the receiver's clock plus "
            f"{max_future_skew_ms / 1000:g} s: {describe_ts(latest)}; send the time the event "
            "happened, in UTC or with its offset",
            user_id,
        )
    return ts


# format_ts is exact on [0, 2**32 s) (see streams.core.eventtime); other times, which only
# rejected records carry, are formatted here by integer arithmetic.
_FORMAT_TS_EXACT_MS = 2**32 * 1000
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def describe_ts(ts_ms: int) -> str:
    """An epoch-millisecond time for a message: RFC 3339 UTC followed by the number, e.g.
    `2026-11-22T10:00:00.000Z (1795341600000 ms)`; the number alone outside years 1-9999."""
    if 0 <= ts_ms < _FORMAT_TS_EXACT_MS:
        return f"{format_ts(ts_ms)} ({ts_ms} ms)"
    try:
        when = _EPOCH + timedelta(milliseconds=ts_ms)
    except OverflowError:
        return f"{ts_ms} ms (outside the years 1-9999)"
    return f"{when.isoformat(timespec='milliseconds').replace('+00:00', 'Z')} ({ts_ms} ms)"


def parse_event(
    raw: bytes,
    key: bytes | None,
    *,
    now_ms: int,
    min_ts_ms: int,
    max_future_skew_ms: int,
    max_bytes: int,
    require_key: bool = False,
) -> Event:
    """Decode and validate one record of `user-events`.

    `now_ms` bounds timestamps from the future; `key`, when present, must equal the user id
    (the key decides the partition, and so which worker owns the user's state). With
    `require_key` (the live topic, as the worker reads it) a record without a key is rejected
    as `missing_key`: the producer's partitioner would have put it on any partition, splitting
    the user's state across workers. Callers that validate a document before they set its key
    (the API's ingest) or read histories that carry no keys (replay, fit) leave it off. The
    document is checked first, so a rejection for the key names the user.
    Raises InvalidEvent.
    """
    doc = _decode_object(raw, max_bytes)
    user_id = _str_field(doc, "user_id", MAX_ID_CHARS, None)
    event_id = _str_field(doc, "event_id", MAX_ID_CHARS, user_id)
    etype = _event_type(doc, user_id)
    ts = _event_ts(doc, user_id, now_ms, min_ts_ms, max_future_skew_ms)
    amount = doc.get("amount")
    has_amount = amount is not None
    cents = _amount_cents(amount, user_id) if has_amount else 0
    props = doc.get("properties")
    if props is not None and not isinstance(props, dict):
        raise InvalidEvent(
            Reason.WRONG_TYPE, f"'properties' must be an object, not {_json_type(props)}", user_id
        )
    if key is None:
        if require_key:
            raise InvalidEvent(
                Reason.MISSING_KEY,
                "the record has no key: set the key to the user id (UTF-8), which decides the "
                "partition that owns the user",
                user_id,
            )
    elif key != user_id.encode():
        raise InvalidEvent(
            Reason.KEY_MISMATCH,
            "the record key must be the user id (it decides the partition that owns the user)",
            user_id,
        )
    return Event(event_id, user_id, etype, ts, cents, has_amount)


def tombstone_key(key: bytes | None) -> bytes:
    """The user id a tombstone (a record of `user-events` with no value) erases: its key.

    Raises InvalidEvent (`missing_key`) when the key is absent or empty: such a tombstone
    names no user, and the erasure it was meant for did not happen.
    """
    if not key:
        raise InvalidEvent(
            Reason.MISSING_KEY,
            "a record without a value (a tombstone) erases the user named by its key, and this "
            "one has " + ("no key" if key is None else "an empty key") + ": set the key to the "
            "user id to erase",
        )
    return bytes(key)
