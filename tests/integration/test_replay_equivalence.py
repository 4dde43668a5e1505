"""The live pipeline and `pulse replay` say the same things for the same input."""

from __future__ import annotations

import asyncio
import json
import time
from collections import defaultdict
from pathlib import Path

import pytest

from streams.core.eventtime import DAY_MS
from streams.core.policy import load_policy
from streams.local.demo import build_schedule
from streams.offline.replay import replay

from .conftest import StackFactory

# A fitted churn model (CDNOW's BG/NBD) with the stage thresholds `pulse fit` proposes for it,
# and a bounded warning window (the demo's users cross 0.6 after 3-4 weeks of silence): with it
# the model decides the warnings, live and in replay alike.
CHURN_MODEL = {
    "r": 0.243,
    "alpha": 4.414,
    "a": 0.793,
    "b": 2.426,
    "warn_probability": 0.6,
    "min_silence_days": 7,
    "max_silence_days": 30,
    "dormant_after_days": 86,
    "churned_after_days": 355,
}
# The warning decided at 7 days of silence, and a late look at 30 days for those it spared.
LATE_LOOK = {
    **CHURN_MODEL,
    "max_silence_days": 7,
    "late_silence_days": 30,
    "late_warn_probability": 0.55,
}


@pytest.mark.parametrize(
    "model", [None, CHURN_MODEL, LATE_LOOK], ids=["silence-rule", "churn-model", "late-look"]
)
async def test_live_pipeline_and_replay_emit_the_same_outputs(
    make_stack: StackFactory, tmp_path: Path, model: dict[str, float] | None
) -> None:
    origin = int(time.time() * 1000) // DAY_MS * DAY_MS - DAY_MS  # yesterday 00:00 UTC
    # 60 days of demo users (loyal, declining, churning, big spenders, ...) ending at origin,
    # malformed and duplicated records included.
    schedule = build_schedule(40, 3, origin - 61 * DAY_MS)
    records = [(uid.encode(), payload) for ts, uid, payload in schedule if ts <= origin]
    overrides = {"sweep_interval_seconds": "0.5"}
    model_file = None
    if model:
        model_file = tmp_path / "churn-model.json"
        model_file.write_text(json.dumps(model))
        overrides["churn_model_file"] = str(model_file)
    stack = await make_stack(start=False, **overrides)
    await stack.produce(records)
    # Live: the worker's own timer on the wall clock, which is past every event.
    stack.start_worker()

    # As the worker loads it (PULSE_CHURN_MODEL_FILE).
    policy = load_policy(None, model_file)
    run = replay(records, policy, now_ms=int(time.time() * 1000), until=origin)
    kinds = {
        "lifecycle_changed": stack.settings.lifecycle_topic,
        "churn_warning": stack.settings.warnings_topic,
        "tier_changed": stack.settings.tiers_topic,
        "recall_reactivated": stack.settings.lifecycle_topic,
        "rfm_segment_changed": stack.settings.rfm_topic,
    }
    # Per output topic and user, the keys in order (a topic keeps each user's order).
    expected: dict[str, dict[str, list[str]]] = {t: defaultdict(list) for t in kinds.values()}
    for out, _ in run.outputs:
        expected[kinds[out.kind]][out.user_id].append(out.idempotency_key)
    total = len(run.outputs)
    assert total > 100 and run.dead_letters and run.duplicates
    assert any(o.kind == "rfm_segment_changed" for o, _ in run.outputs)
    warnings = [o.payload for o, _ in run.outputs if o.kind == "churn_warning"]
    assert any(w["reason"] == "churn_probability" for w in warnings) == (model is not None)
    if model is LATE_LOOK:  # some warnings came from the look, 30 days into a silence
        assert any(w["figures"]["silence_days"] >= 30 for w in warnings)

    deadline = time.monotonic() + 120
    while True:
        live: dict[str, dict[str, list[str]]] = {t: defaultdict(list) for t in kinds.values()}
        for topic in set(kinds.values()):  # recall reactivations share the lifecycle topic
            for d in await stack.outputs(topic):
                if d["event_time_ms"] <= origin:
                    live[topic][d["user_id"]].append(d["idempotency_key"])
        got = sum(len(keys) for per_user in live.values() for keys in per_user.values())
        if got >= total or time.monotonic() > deadline:
            break
        await asyncio.sleep(1)
    for topic in kinds.values():
        assert dict(live[topic]) == dict(expected[topic]), topic
