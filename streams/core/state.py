"""The per-user state kept in the Faust table, and its compact binary encoding."""

from __future__ import annotations

import hashlib
from typing import Any, Protocol, cast

import msgspec

from streams.core.rfm import PurchaseDay
from streams.core.windows import DayBucket

STATE_FORMAT = 1


# gc=False: frozen, holding only numbers, strings and tuples of those or of other such structs,
# so never part of a reference cycle; untracked, its many short-lived copies do not set off
# garbage collections.
class RecallCell(msgspec.Struct, frozen=True, gc=False, array_like=True):
    """One user's warnings in one (group, tier, reason) cell, by outcome so far."""

    group: str
    tier: str
    reason: str
    warned: int = 0
    reactivated: int = 0
    not_reactivated: int = 0

    @property
    def open(self) -> int:
        return self.warned - self.reactivated - self.not_reactivated


# gc=False for the same reason as RecallCell.
class UserState(msgspec.Struct, frozen=True, gc=False, array_like=True):
    """Everything Pulse remembers about one user; bounded in size by the policy.

    Times are epoch millis. `evaluated_at` is the user's event-time clock: the latest event time
    or sweep time applied; decisions up to it have been made and emitted.
    """

    user_id: str
    first_seen: int
    last_seen: int
    last_active: int | None
    evaluated_at: int
    buckets: tuple[DayBucket, ...] = ()
    # Fingerprints of the latest event ids, oldest first, for duplicate detection: 8 bytes each
    # (`fingerprint`), one bytes object, so a state decodes them without making an int each.
    # States written before hold a tuple of the same fingerprints as ints (`recent_fingerprints`
    # reads both).
    recent_ids: bytes | tuple[int, ...] = b""
    # Source position of the last applied event: redelivered records are recognised by it.
    partition: int = -1
    last_offset: int = -1
    total_events: int = 0
    total_spend_cents: int = 0
    stage: str = ""
    stage_since: int = 0
    stage_reason: str = ""
    returned_at: int | None = None
    episode_start: int | None = None
    last_warning_at: int | None = None
    last_warning_reason: str | None = None
    risk: float = 0.0
    tier: str = ""
    tier_since: int = 0
    downgrade_pending_since: int | None = None
    # BG/NBD sufficient statistics: distinct purchase days, first and last of them (UTC days).
    purchase_days: int = 0
    first_purchase_day: int | None = None
    last_purchase_day: int | None = None
    version: int = 0
    next_check: int = 0
    format: int = STATE_FORMAT
    # Appended fields (array-like encoding: states written before them still decode).
    # The warning under recall measurement until its attribution window ends: its event time
    # (None: none), the user's group, tier and the warning's reason then, and when the user
    # came back within the window (None: not yet).
    recall_at: int | None = None
    recall_group: str = ""
    recall_tier: str = ""
    recall_reason: str = ""
    recall_returned_at: int | None = None
    # This user's warnings per (group, tier, reason) by outcome (streams/core/recall.py).
    recall_tally: tuple[RecallCell, ...] = ()
    # The churn model's statistics: distinct UTC days with activity (a non-passive event), the
    # first and last of them. States written before these fields were added decode with 0 and
    # get them seeded from their day buckets at their next event (engine._active_day).
    active_days: int = 0
    first_active_day: int | None = None
    last_active_day: int | None = None
    # Retention cohorts (streams/core/retention.py): the UTC day of the first activity (None:
    # none yet, or activity before the cohorts were kept) and, relative to it, the days and
    # ISO weeks with activity (bit k: period k; one bit more: any later period).
    cohort_day: int | None = None
    cohort_day_bits: int = 0
    cohort_week_bits: int = 0
    # RFM value segments (streams/core/rfm.py): the purchase days within the RFM window, the
    # scores ("RFM", e.g. "534") and segment as of `evaluated_at` ("": no purchase in it).
    rfm_days: tuple[PurchaseDay, ...] = ()
    rfm_scores: str = ""
    rfm_segment: str = ""
    # The UTC day the scores next change without a purchase (`rfm.next_change`; 0: not known)
    # and the `Derived.rfm_tag` of the policy that found it (0: none). Until that day, under
    # that policy, an evaluation without a new purchase keeps the scores without assessing them.
    rfm_until: int = 0
    rfm_policy: int = 0


_encoder = msgspec.msgpack.Encoder()
_decoder = msgspec.msgpack.Decoder(UserState)


def encode_state(state: UserState) -> bytes:
    """Compact msgpack (array-like structs: no field names on the wire)."""
    return _encoder.encode(state)


def decode_state(data: bytes) -> UserState:
    """Inverse of encode_state. Raises msgspec.DecodeError on foreign bytes."""
    return _decoder.decode(data)


class Summary(Protocol):
    """What a partition's index keeps of a user (streams/worker/partindex.py)."""

    @property
    def partition(self) -> int: ...
    @property
    def stage(self) -> str: ...
    @property
    def tier(self) -> str: ...
    @property
    def next_check(self) -> int: ...
    @property
    def recall_tally(self) -> tuple[RecallCell, ...]: ...
    @property
    def rfm_segment(self) -> str: ...


# UserState's layout with the two long tuples left undecoded: rebuilding the indexes after a
# rebalance reads every state in the table, and the day buckets and event-id fingerprints are
# a third of a state's decoding time (1M states of the benchmark's workload: 1.35 s instead
# of 2.0 s). Derived from UserState's fields, so it follows every change to them.
def _summary_field(f: msgspec.structs.FieldInfo) -> tuple[str, Any, Any]:
    kind = msgspec.Raw if f.name in ("buckets", "recent_ids", "rfm_days") else f.type
    if f.default_factory is not msgspec.NODEFAULT:
        return f.name, kind, msgspec.field(default_factory=f.default_factory)
    return f.name, kind, f.default  # NODEFAULT: required, as in UserState


_Summary = msgspec.defstruct(
    "_Summary",
    [_summary_field(f) for f in msgspec.structs.fields(UserState)],
    frozen=True,
    gc=False,
    array_like=True,
)
_summary_decoder = msgspec.msgpack.Decoder(_Summary)


def decode_summary(data: bytes) -> Summary:
    """The fields of `decode_state(data)` an index needs, decoded at a fraction of the cost."""
    return cast(Summary, _summary_decoder.decode(data))


def fingerprint(event_id: str) -> bytes:
    """A 63-bit digest of an event id, for bounded duplicate detection: 8 bytes, big-endian."""
    digest = hashlib.blake2b(event_id.encode(), digest_size=8).digest()
    return (int.from_bytes(digest) >> 1).to_bytes(8, "big")


def recent_fingerprints(ids: bytes | tuple[int, ...]) -> bytes:
    """A state's `recent_ids` as fingerprints (the tuple of ints of older states converted)."""
    if isinstance(ids, bytes):
        return ids
    return b"".join(i.to_bytes(8, "big") for i in ids)


def seen_before(ids: bytes, fp: bytes) -> bool:
    """Whether fingerprint `fp` is one of `ids` (at a multiple of 8: a match straddling two
    fingerprints is not one)."""
    i = ids.find(fp)
    while i != -1 and i % 8:
        i = ids.find(fp, i + 1)
    return i != -1
