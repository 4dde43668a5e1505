"""One clock for the demo: the API reads the worker's clock settings and maps wall time onto
event time exactly as the worker does, and tells it on GET /live/clock."""

from __future__ import annotations

import time

import pytest
from fastapi.testclient import TestClient
from hypothesis import given
from hypothesis import strategies as st

from services import clock as api_clock
from services.app import create_app
from services.settings import ApiSettings
from streams.core.eventtime import DAY_MS, parse_ts, virtual_now
from streams.settings import WorkerSettings

EPOCH_MS = st.integers(min_value=946_684_800_000, max_value=4_102_444_800_000)  # 2000..2100


@given(
    wall=EPOCH_MS,
    origin=EPOCH_MS,
    rate=st.one_of(st.just(1.0), st.floats(min_value=0.001, max_value=1_000_000)),
)
def test_the_api_reads_event_time_through_the_cores_mapping(
    wall: int, origin: int, rate: float
) -> None:
    settings = ApiSettings(clock_origin_ms=origin, clock_rate=rate)
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(api_clock, "wall_ms", lambda: wall)
        assert api_clock.now_ms(settings) == virtual_now(wall, origin, rate)
    assert virtual_now(wall, origin, 1.0) == wall
    assert virtual_now(origin, origin, rate) == origin


def test_the_api_and_the_worker_read_the_same_clock_variables(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("PULSE_CLOCK_ORIGIN_MS", "1795305600000")
    monkeypatch.setenv("PULSE_CLOCK_RATE", "28800")
    api, worker = ApiSettings(), WorkerSettings()
    assert (api.clock_origin_ms, api.clock_rate) == (worker.clock_origin_ms, worker.clock_rate)
    assert (api.clock_origin_ms, api.clock_rate) == (1_795_305_600_000, 28_800)


def test_without_clock_settings_event_time_is_wall_time() -> None:
    before = time.time_ns() // 1_000_000
    now = api_clock.now_ms(ApiSettings(clock_origin_ms=0, clock_rate=1.0))
    assert before <= now <= time.time_ns() // 1_000_000


def test_the_live_clock_route_tells_the_accelerated_event_time_next_to_wall_time() -> None:
    # The demo's clock started ten wall seconds ago at a day every 3 s: 3 1/3 days ahead.
    origin = time.time_ns() // 1_000_000 - 10_000
    settings = ApiSettings(clock_origin_ms=origin, clock_rate=28_800, api_keys="k:read")
    with TestClient(create_app(settings)) as client:
        answer = client.get("/live/clock")
    assert answer.status_code == 200, answer.text
    doc = answer.json()
    wall = parse_ts(doc["wall_time"])
    assert doc["rate"] == 28_800
    assert doc["event_time_ms"] == parse_ts(doc["event_time"])
    assert doc["event_time_ms"] == virtual_now(wall, origin, 28_800)
    assert 3 * DAY_MS < doc["event_time_ms"] - wall < 4 * DAY_MS
