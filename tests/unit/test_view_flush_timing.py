"""When the view writer writes: every interval while the worker keeps up, every catch-up
interval while it reads a backlog, at once when too many users wait (no Redis is reached:
`due` only reads the clock it is given). The knobs: tests/unit/test_worker_view_settings.py."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
import redis.asyncio as aioredis

from streams.core.policy import Policy
from streams.core.state import UserState, encode_state
from streams.settings import WorkerSettings
from streams.view.writer import View, ViewWriter, indexed
from streams.worker.app import build_app


def _writer(behind: bool | None, pending: int, **kw: Any) -> ViewWriter:
    view = View(aioredis.from_url("redis://127.0.0.1:1/0"), "t")
    w = ViewWriter(view, behind=None if behind is None else (lambda: behind), **kw)
    for n in range(pending):
        u = f"u{n}"
        w.put(UserState(user_id=u, first_seen=0, last_seen=0, last_active=0, evaluated_at=0), [])
    w._written_at = 0.0
    return w


# (behind, pending users, seconds since the last write, due)
CASES = [
    (False, 0, 10.0, False),  # nothing to write
    (False, 1, 0.01, False),  # keeping up, within the interval
    (False, 1, 0.05, True),  # keeping up, the interval has passed
    (None, 1, 0.05, True),  # no backlog signal: the interval alone
    (True, 1, 0.05, False),  # reading a backlog: the catch-up interval
    (True, 1, 1.99, False),
    (True, 1, 2.0, True),
    (True, 3, 0.0, True),  # as many users wait as allowed: at once
    (False, 3, 0.0, True),
]


@pytest.mark.parametrize(("behind", "pending", "since", "due"), CASES)
def test_when_the_writer_writes(behind: bool | None, pending: int, since: float, due: bool) -> None:
    w = _writer(behind, pending, interval_s=0.05, catchup_interval_s=2.0, max_pending=3)
    assert w.due(since) is due


def test_the_catch_up_interval_is_never_shorter_than_the_interval() -> None:
    w = _writer(True, 1, interval_s=0.5, catchup_interval_s=0.1)
    assert w.catchup_interval_s == 0.5
    assert not w.due(0.4)
    assert w.due(0.5)


def test_without_a_catch_up_interval_the_backlog_changes_nothing() -> None:
    w = _writer(True, 1, interval_s=0.05)
    assert w.due(0.05)


# (lag per partition, batch_max, reading a backlog)
LAGS = [
    ({0: 0, 1: 10}, 2000, False),
    ({0: 2000}, 2000, False),  # one batch unread: the next fetch takes it
    ({0: 0, 1: 2001}, 2000, True),
    ({0: None}, 2000, False),  # high watermark not known yet
    ({}, 2000, False),
]


@pytest.mark.parametrize(("lags", "batch_max", "behind"), LAGS)
def test_reading_a_backlog(
    lags: dict[int, int | None],
    batch_max: int,
    behind: bool,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    settings = WorkerSettings(redis_url="", data_dir=str(tmp_path), batch_max=batch_max)
    _, proc = build_app(settings, Policy())
    partitions = proc.partitions
    monkeypatch.setattr(partitions, "active_partitions", lambda: sorted(lags))
    monkeypatch.setattr(partitions, "lag", lags.get)
    assert partitions.reading_backlog() is behind


async def test_a_last_flush_that_fails_is_logged_and_keeps_the_updates(
    caplog: pytest.LogCaptureFixture,
) -> None:
    w = _writer(False, 2)  # nothing listens on port 1
    await w.drain()
    assert len(w.pending) == 2
    assert "the view's last 2 updates were not written" in caplog.text


async def test_a_last_flush_never_waits_longer_than_its_timeout(
    caplog: pytest.LogCaptureFixture,
) -> None:
    w = _writer(False, 1)

    async def hangs() -> None:
        await asyncio.sleep(3600)

    w._flush = hangs  # type: ignore[method-assign]  # a Redis that accepts and never answers
    await asyncio.wait_for(w.drain(timeout_s=0.05), 5)
    assert "the view's last 1 updates were not written (TimeoutError())" in caplog.text


def test_a_waiting_update_keeps_the_fields_it_writes_not_the_state() -> None:
    w = _writer(False, 0)
    state = UserState(user_id="k", first_seen=0, last_seen=0, last_active=0, evaluated_at=0)
    w.put(state, [], b"bytes")
    kept = w.pending["k"]
    assert kept.state == indexed(state) and kept.encoded == b"bytes"
    # Without the bytes the state is encoded when queued: the write has no state to encode.
    w.put(state, [])
    assert w.pending["k"].encoded == encode_state(state)
