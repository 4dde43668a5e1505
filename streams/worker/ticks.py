"""Tick records: every worker's timer tells its partitions that event time reached `now`.

They travel on `pulse-ticks`, co-partitioned with `user-events`, so the agent that owns a user's
events also applies the sweeps that let the user's silence count (see the Faust notes: a timer
must not write the table itself).
"""

from __future__ import annotations

import msgspec


class Tick(msgspec.Struct, frozen=True):
    """A tick record: event time has reached `now` in this partition."""

    now: int


_tick_decoder = msgspec.json.Decoder(Tick)
_tick_encoder = msgspec.json.Encoder()


def encode_tick(now_ms: int) -> bytes:
    return _tick_encoder.encode(Tick(now_ms))


def decode_tick(value: bytes) -> int:
    """The tick's event time. Raises msgspec.DecodeError on a malformed tick."""
    return _tick_decoder.decode(value).now
