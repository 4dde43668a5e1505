"""Records of `user-events` without a key, on the real broker and worker: dead letters with the
reason `missing_key`, while keyed tombstones still erase their user."""

from __future__ import annotations

import base64
import urllib.request

from .conftest import Stack
from .events import day_base, ev


def _dlq_count(stack: Stack, reason: str) -> float:
    text = urllib.request.urlopen(stack.metrics_url, timeout=5).read().decode()
    for line in text.splitlines():
        if line.startswith(f'pulse_dlq_total{{reason="{reason}"}} '):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


async def test_keyless_records_are_dead_letters_and_keyed_tombstones_still_erase(
    stack: Stack,
) -> None:
    t = day_base(1)
    _, keyless = ev("k1", "kim", "page_view", t)
    await stack.produce(
        [
            ev("a1", "ann", "page_view", t),
            ev("b1", "bob", "page_view", t),
            (None, keyless),  # an event without a key
            # A tombstone with an empty key names no one (aiokafka sends no record with
            # neither key nor value; tombstone_key treats both alike: tests/unit).
            (b"", None),
            (b"ann", None),  # a tombstone: erases ann
        ]
    )
    dlq = await stack.outputs(stack.settings.dlq_topic, lambda d: len(d) >= 2)
    assert sorted((d["reason"], d["user_id"] or "") for d in dlq) == [
        ("missing_key", ""),
        ("missing_key", "kim"),
    ]
    by_value = {base64.b64decode(d["original_b64"]): d for d in dlq}
    event = by_value[keyless]
    assert event["source"]["key_b64"] is None
    assert "set the key to the user id" in event["detail"]
    tombstone = by_value[b""]
    assert "tombstone" in tombstone["detail"] and "an empty key" in tombstone["detail"]
    # ann erased, bob kept, and kim's keyless event applied to no one.
    states = await stack.states(lambda s: "bob" in s and "ann" not in s)
    assert set(states) == {"bob"}
    assert _dlq_count(stack, "missing_key") == 2
