"""The worker's partition indexes are built when a rebalance completes, not by the first batch
(building the app connects to nothing; the signal is sent by hand)."""

from __future__ import annotations

import asyncio
from pathlib import Path

from streams.core.policy import Policy
from streams.core.state import UserState, encode_state
from streams.settings import WorkerSettings
from streams.worker.app import build_app


def _state(user: str, partition: int, stage: str, next_check: int) -> UserState:
    return UserState(
        user_id=user,
        first_seen=0,
        last_seen=0,
        last_active=0,
        evaluated_at=0,
        stage=stage,
        tier="bronze",
        next_check=next_check,
        partition=partition,
    )


def test_indexes_built_when_the_rebalance_completes(tmp_path: Path) -> None:
    app, proc = build_app(WorkerSettings(redis_url="", data_dir=str(tmp_path)), Policy())
    users = [
        _state("a", 0, "active", 100),
        _state("b", 0, "at_risk", 50),
        _state("c", 3, "new", 70),
    ]
    for s in users:
        proc.table.data[s.user_id.encode()] = encode_state(s)
    assert proc.partitions.indexes == {}

    asyncio.run(app.on_rebalance_complete.send())

    assert sorted(proc.partitions.indexes) == [0, 3]
    assert proc.partitions.indexes[0].stages == {"active": 1, "at_risk": 1}
    assert proc.partitions.indexes[3].stages == {"new": 1}
    assert proc.partitions.indexes[0].next_check == {b"a": 100, b"b": 50}


def test_a_partition_without_users_costs_no_second_pass(tmp_path: Path) -> None:
    app, proc = build_app(WorkerSettings(redis_url="", data_dir=str(tmp_path)), Policy())
    proc.table.data[b"a"] = encode_state(_state("a", 0, "active", 100))
    asyncio.run(app.on_rebalance_complete.send())
    # A user the table gets after the build is counted by the batch that writes it, not by
    # a pass over the table: partition 5 starts empty.
    proc.table.data[b"z"] = encode_state(_state("z", 5, "active", 10))
    assert len(proc.partitions.index(5)) == 0
    assert proc.partitions.indexes[0].stages == {"active": 1}

    # After a revocation the next index asked for takes one pass again.
    proc.partitions.forget_indexes()
    assert proc.partitions.indexes == {}
    assert proc.partitions.index(5).stages == {"active": 1}
    assert proc.partitions.indexes[0].stages == {"active": 1}
