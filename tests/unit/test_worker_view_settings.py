"""The worker's view knobs reach its view writer (building the app connects to nothing)."""

from __future__ import annotations

from pathlib import Path

import pytest

from streams.core.policy import Policy
from streams.settings import WorkerSettings
from streams.worker.app import build_app

# (environment, the writer's interval, catch-up interval and pending cap)
KNOBS = [
    ({}, (0.05, 2.0, 10_000)),
    ({"PULSE_VIEW_FLUSH_SECONDS": "0.5"}, (0.5, 2.0, 10_000)),
    ({"PULSE_VIEW_CATCHUP_FLUSH_SECONDS": "5", "PULSE_VIEW_MAX_PENDING": "123"}, (0.05, 5.0, 123)),
]


@pytest.mark.parametrize(("env", "knobs"), KNOBS)
def test_the_view_knobs_reach_the_writer(
    env: dict[str, str],
    knobs: tuple[float, float, int],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    settings = WorkerSettings(redis_url="redis://127.0.0.1:1/0", data_dir=str(tmp_path))
    _, proc = build_app(settings, Policy())
    w = proc.writer
    assert w is not None
    assert (w.interval_s, w.catchup_interval_s, w.max_pending) == knobs
    assert w.behind == proc.partitions.reading_backlog


def test_no_view_without_redis_url(tmp_path: Path) -> None:
    _, proc = build_app(WorkerSettings(redis_url="", data_dir=str(tmp_path)), Policy())
    assert proc.writer is None


@pytest.mark.parametrize(
    ("name", "bad"),
    [
        ("PULSE_VIEW_FLUSH_SECONDS", "0"),
        ("PULSE_VIEW_FLUSH_SECONDS", "-1"),
        ("PULSE_VIEW_FLUSH_SECONDS", "61"),
        ("PULSE_VIEW_CATCHUP_FLUSH_SECONDS", "0"),
        ("PULSE_VIEW_CATCHUP_FLUSH_SECONDS", "61"),
        ("PULSE_VIEW_MAX_PENDING", "0"),
    ],
)
def test_view_knob_bounds(name: str, bad: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(name, bad)
    with pytest.raises(ValueError, match=name.removeprefix("PULSE_").lower()):
        WorkerSettings()
