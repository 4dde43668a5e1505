"""End to end on the real embedded broker: events in, outputs and dead letters out."""

from __future__ import annotations

import asyncio
import urllib.request
from collections import Counter
from typing import Any

from aiokafka.partitioner import murmur2

from streams.core.eventtime import DAY_MS

from .conftest import Stack
from .events import day_base, ev


def _metric(stack: Stack, name: str, labels: str = "") -> float:
    text = urllib.request.urlopen(stack.metrics_url, timeout=5).read().decode()
    for line in text.splitlines():
        if line.startswith(f"{name}{labels} ") or line.startswith(f"{name}{{{labels}}} "):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def _for(user: str, docs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [d for d in docs if d["user_id"] == user]


async def test_new_user_and_big_spender_get_lifecycle_and_tier_events(stack: Stack) -> None:
    t = day_base(1)
    await stack.produce(
        [
            ev("a1", "ann", "signup", t),
            ev("a2", "ann", "session_start", t + 60_000),
            ev("b1", "ben", "purchase", t, 300),
            ev("b2", "ben", "purchase", t + 1000, 300),
            ev("b3", "ben", "purchase", t + 2000, 1500.50),
        ]
    )
    tiers = await stack.outputs(
        stack.settings.tiers_topic, lambda d: len(_for("ben", d)) >= 3 and _for("ann", d)
    )
    moves = [(d["from_tier"], d["to_tier"], d["direction"]) for d in _for("ben", tiers)]
    assert moves == [
        (None, "silver", "initial"),
        ("silver", "gold", "upgrade"),
        ("gold", "platinum", "upgrade"),
    ]
    assert _for("ben", tiers)[-1]["figures"] == {"spend_window": 2100.5, "threshold": 2000.0}
    assert _for("ben", tiers)[-1]["event_time_ms"] == t + 2000
    assert [(d["from_tier"], d["to_tier"]) for d in _for("ann", tiers)] == [(None, "bronze")]
    stages = await stack.outputs(
        stack.settings.lifecycle_topic, lambda d: _for("ann", d) and _for("ben", d)
    )
    ann = _for("ann", stages)
    assert [(d["from_stage"], d["to_stage"]) for d in ann] == [(None, "new")]
    assert ann[0]["event_time_ms"] == t
    assert len(ann[0]["idempotency_key"]) == 32


async def test_duplicate_event_is_not_counted_twice(stack: Stack) -> None:
    t = day_base(0)
    await stack.produce(
        [
            ev("d1", "dup", "page_view", t),
            ev("d2", "dup", "page_view", t + 1),
            ev("d1", "dup", "page_view", t),  # the same event again
            ev("d3", "dup", "purchase", t + 2, 50),
            ev("d3", "dup", "purchase", t + 2, 50),  # a retried purchase must not double spend
        ]
    )
    states = await stack.states(lambda s: "dup" in s and s["dup"].last_offset >= 4)
    assert states["dup"].total_events == 3
    assert states["dup"].total_spend_cents == 5000
    assert _metric(stack, "pulse_events_skipped_total", 'kind="duplicate"') == 2


async def test_malformed_events_land_in_the_dlq_with_reasons(stack: Stack) -> None:
    t = day_base(0)
    far_future = t + 400 * DAY_MS
    bad = [
        (b"x", b"{not json"),
        (b"x", b"[1, 2, 3]"),
        (b"x", b'{"event_id": "m1", "type": "page_view", "ts": 1}'),
        (
            b"mal",
            b'{"event_id": "m2", "user_id": "mal", "type": "purchase", "ts": %d, "amount": -5}' % t,
        ),
        (b"mal", b'{"event_id": "m3", "user_id": "mal", "type": "page_view", "ts": "yesterday"}'),
        (
            b"mal",
            b'{"event_id": "m4", "user_id": "mal", "type": "page_view", "ts": %d}' % far_future,
        ),
        (b"other", b'{"event_id": "m5", "user_id": "mal", "type": "page_view", "ts": %d}' % t),
        (b"mal", b"\xff\xfe not utf-8"),
    ]
    good_then_late = [
        ev("ok1", "late", "page_view", t),
        ev("ok2", "late", "page_view", t - 5 * DAY_MS),
    ]
    await stack.produce(bad + good_then_late)
    expected = {
        b"{not json": "invalid_json",
        b"[1, 2, 3]": "not_an_object",
        bad[2][1]: "missing_field",
        bad[3][1]: "invalid_value",
        bad[4][1]: "wrong_type",
        bad[5][1]: "timestamp_out_of_range",
        bad[6][1]: "key_mismatch",
        b"\xff\xfe not utf-8": "invalid_json",
        good_then_late[1][1]: "too_late",
    }
    import base64

    dlq = await stack.outputs(stack.settings.dlq_topic, lambda d: len(d) >= len(expected))
    assert len(dlq) == len(expected)
    got = {base64.b64decode(d["original_b64"]): d for d in dlq}
    assert {raw: d["reason"] for raw, d in got.items()} == expected
    for d in dlq:
        assert d["detail"]
        assert d["source"]["topic"] == stack.settings.events_topic
        assert d["source"]["offset"] >= 0
    assert "'user_id'" in got[bad[2][1]]["detail"]
    assert got[good_then_late[1][1]]["user_id"] == "late"
    reasons = Counter(expected.values())
    for reason, n in reasons.items():
        assert _metric(stack, "pulse_dlq_total", f'reason="{reason}"') == n
    # The good event of the same user was applied, the late one was not counted.
    states = await stack.states(lambda s: "late" in s)
    assert states["late"].total_events == 1


async def test_silent_user_gets_exactly_one_warning(stack: Stack) -> None:
    first = day_base(20)
    await stack.produce(
        [ev(f"s{i}", "sil", "session_start", first + i * DAY_MS) for i in range(10)]
        + [ev("busy0", "busy", "page_view", first)]
    )
    await stack.states(lambda s: "sil" in s and s["sil"].total_events == 10)
    last = first + 9 * DAY_MS
    # Event time passes day by day (and every tick twice, as two workers might send them).
    for days in range(10, -1, -1):
        await stack.tick(day_base(days))
        await stack.tick(day_base(days))
    await stack.wait_sweeps(11 * 2 * stack.settings.partitions)
    warnings = _for("sil", await stack.outputs(stack.settings.warnings_topic))
    assert len(warnings) == 1
    w = warnings[0]
    assert w["reason"] == "silence_exceeds_normal"
    assert w["event_time_ms"] == last + 3 * DAY_MS  # typical gap 1 day x 3 = the 3-day floor
    assert w["figures"]["typical_gap_days"] == 1.0
    assert 0 <= w["risk_score"] <= 1
    stages = _for("sil", await stack.outputs(stack.settings.lifecycle_topic))
    assert [(d["from_stage"], d["to_stage"]) for d in stages] == [
        (None, "new"),
        ("new", "active"),
        ("active", "at_risk"),
    ]


async def test_worker_timer_warns_a_silent_user_in_real_time(make_stack: Any) -> None:
    import time

    origin = int(time.time() * 1000)
    rate = 43_200  # one virtual day every 2 s
    stack = await make_stack(
        sweep_interval_seconds="0.5", clock_rate=str(rate), clock_origin_ms=str(origin)
    )
    await stack.produce(
        [ev(f"t{i}", "tim", "session_start", origin - (3 - i) * DAY_MS) for i in range(4)]
    )
    warnings = await stack.outputs(stack.settings.warnings_topic, lambda d: len(d) >= 1)
    assert [(w["user_id"], w["event_time_ms"]) for w in warnings] == [("tim", origin + 3 * DAY_MS)]
    # Three more virtual days of ticks: still one warning for the episode.
    while time.time() * 1000 < origin + 6 * DAY_MS / rate:
        await asyncio.sleep(0.2)
    await stack.wait_sweeps(stack.metric("pulse_sweeps_total") + 2 * stack.settings.partitions)
    assert len(await stack.outputs(stack.settings.warnings_topic)) == 1


async def test_outputs_are_keyed_and_partitioned_by_user_as_any_kafka_client_would(
    stack: Stack,
) -> None:
    """A sender consuming one partition sees all of its users' outputs: each lands where
    Kafka's default partitioner (murmur2, the Java client's) puts its user id."""
    users = [f"part-{i}" for i in range(24)]
    await stack.produce([ev(f"p{i}", u, "signup", day_base(1)) for i, u in enumerate(users)])
    records = await stack.read(
        stack.settings.lifecycle_topic,
        lambda rs: {r.key.decode() for r in rs} >= set(users),
    )
    mine = [r for r in records if r.key.decode() in users]
    assert {r.partition for r in mine} == set(range(stack.settings.partitions))
    count = stack.settings.partitions
    assert all(r.partition == (murmur2(r.key) & 0x7FFFFFFF) % count for r in mine)
