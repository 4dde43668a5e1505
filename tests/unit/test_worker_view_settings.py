"""The worker's view knobs reach its view writer (building the app connects to nothing)."""

from __future__ import annotations

from pathlib import Path

import pytest

from streams.core.policy import Policy
from streams.settings import WorkerSettings
from streams.worker.app import build_app


@pytest.mark.parametrize(("env", "interval"), [(None, 0.05), ("0.5", 0.5)])
def test_view_flush_interval(
    env: str | None, interval: float, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    if env is not None:
        monkeypatch.setenv("PULSE_VIEW_FLUSH_SECONDS", env)
    settings = WorkerSettings(redis_url="redis://127.0.0.1:1/0", data_dir=str(tmp_path))
    _, proc = build_app(settings, Policy())
    assert proc.writer is not None
    assert proc.writer.interval_s == interval


def test_no_view_without_redis_url(tmp_path: Path) -> None:
    _, proc = build_app(WorkerSettings(redis_url="", data_dir=str(tmp_path)), Policy())
    assert proc.writer is None


@pytest.mark.parametrize("bad", ["0", "-1", "61"])
def test_view_flush_interval_bounds(bad: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PULSE_VIEW_FLUSH_SECONDS", bad)
    with pytest.raises(ValueError, match="view_flush_seconds"):
        WorkerSettings()
