"""A real Prometheus (Debian's) scrapes a running `pulse worker` and `pulse api` on the embedded
stack (Tansu, redis-server), every second, with the production alert rules loaded. Asserted
through Prometheus' HTTP API: the key series exist and move, the rules evaluate, every
dashboard query runs; and `promtool check metrics` accepts both exposition endpoints.
"""

from __future__ import annotations

import asyncio
import json
import math
import os
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import msgspec
import pytest
import yaml
from aiokafka import AIOKafkaProducer

from streams.local.embedded import Server, free_port, start_redis, start_tansu, terminate
from streams.settings import WorkerSettings
from streams.worker.topics import ensure_topics

from .conftest import (
    DASHBOARDS,
    RULES,
    grafana_to_promql,
    require_prometheus_tool,
)

pytestmark = pytest.mark.integration

KEY = "deploy-test-key"
USERS = 6


@dataclass
class Running:
    """The processes under test and where they answer."""

    worker_url: str
    api_url: str
    prometheus_url: str
    bootstrap: str
    events_topic: str
    logs: Path

    def log_tail(self) -> str:
        return "\n".join(
            f"--- {p.name} ---\n" + p.read_text(errors="replace")[-3000:]
            for p in sorted(self.logs.glob("*.log"))
        )


def _spawn(cmd: list[str], env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    with log.open("wb") as out:
        return subprocess.Popen(
            cmd, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )


def _prometheus_config(worker_port: int, api_port: int) -> dict[str, Any]:
    return {
        "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
        "rule_files": [str(RULES)],
        "scrape_configs": [
            {
                "job_name": "pulse-worker",
                "static_configs": [{"targets": [f"127.0.0.1:{worker_port}"]}],
            },
            {"job_name": "pulse-api", "static_configs": [{"targets": [f"127.0.0.1:{api_port}"]}]},
        ],
    }


@pytest.fixture(scope="module")
async def running(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Running]:
    prometheus = require_prometheus_tool("prometheus")
    require_prometheus_tool("promtool")
    tmp = tmp_path_factory.mktemp("scrape")
    broker: Server = start_tansu(log_dir=tmp)
    redis: Server = start_redis()
    procs: list[subprocess.Popen[bytes]] = []
    try:
        worker_port, api_port, prom_port = free_port(), free_port(), free_port()
        env = {
            **os.environ,
            "PULSE_BROKER_URL": f"kafka://127.0.0.1:{broker.port}",
            "PULSE_REDIS_URL": f"redis://127.0.0.1:{redis.port}/0",
            "PULSE_PARTITIONS": "2",
            "PULSE_DATA_DIR": str(tmp / "data"),
            "PULSE_METRICS_HOST": "127.0.0.1",
            "PULSE_METRICS_PORT": str(worker_port),
            "PULSE_SWEEP_INTERVAL_SECONDS": "1",
            "PULSE_API_HOST": "127.0.0.1",
            "PULSE_API_PORT": str(api_port),
            "PULSE_API_KEYS": f"{KEY}:read",
            "PULSE_LOG_LEVEL": "warning",
        }
        settings = WorkerSettings(
            **{k[6:].lower(): v for k, v in env.items() if k.startswith("PULSE_")}
        )
        await ensure_topics(settings)
        cli = [sys.executable, "-m", "streams.cli"]
        procs.append(_spawn([*cli, "worker"], env, tmp / "worker.log"))
        procs.append(_spawn([*cli, "api"], env, tmp / "api.log"))
        config = tmp / "prometheus.yml"
        config.write_text(yaml.safe_dump(_prometheus_config(worker_port, api_port)))
        procs.append(
            _spawn(
                [
                    prometheus,
                    f"--config.file={config}",
                    f"--web.listen-address=127.0.0.1:{prom_port}",
                    f"--storage.tsdb.path={tmp / 'tsdb'}",
                    "--log.level=warn",
                ],
                env,
                tmp / "prometheus.log",
            )
        )
        # Prometheus takes a few seconds to listen on a loaded machine.
        _wait_listening(prom_port, procs[-1], tmp / "prometheus.log")
        yield Running(
            worker_url=f"http://127.0.0.1:{worker_port}/metrics",
            api_url=f"http://127.0.0.1:{api_port}",
            prometheus_url=f"http://127.0.0.1:{prom_port}",
            bootstrap=settings.bootstrap,
            events_topic=settings.events_topic,
            logs=tmp,
        )
    finally:
        for proc in reversed(procs):
            terminate(proc)
        redis.stop()
        broker.stop()


def _wait_listening(
    port: int, proc: subprocess.Popen[bytes], log: Path, timeout: float = 60
) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"exited with {proc.returncode}: {log.read_text()[-2000:]}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.1)
    raise AssertionError(f"nothing listens on 127.0.0.1:{port} after {timeout} s")


async def _query(client: httpx.AsyncClient, expr: str) -> list[dict[str, Any]]:
    """An instant query through Prometheus' HTTP API; raises on a query error."""
    r = await client.get("/api/v1/query", params={"query": expr})
    body = r.json()
    assert body["status"] == "success", f"{expr}: {body}"
    result: list[dict[str, Any]] = body["data"]["result"]
    return result


def _scalar(result: list[dict[str, Any]]) -> float | None:
    return float(result[0]["value"][1]) if result else None


async def _until(
    running: Running,
    client: httpx.AsyncClient,
    expr: str,
    ok: Callable[[list[dict[str, Any]]], bool],
    timeout: float = 60,
) -> list[dict[str, Any]]:
    deadline = time.monotonic() + timeout
    while True:
        result = await _query(client, expr)
        if ok(result):
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"{expr} never held; last {result}\n{running.log_tail()}")
        await asyncio.sleep(0.5)


def _at_least(n: float) -> Callable[[list[dict[str, Any]]], bool]:
    return lambda result: (_scalar(result) or 0) >= n


async def _produce(running: Running, records: list[tuple[bytes, bytes]]) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=running.bootstrap, acks="all")
    await producer.start()
    try:
        for key, value in records:
            await producer.send_and_wait(running.events_topic, value, key=key)
    finally:
        await producer.stop()


def _events(wave: int) -> list[tuple[bytes, bytes]]:
    """Per user a signup (wave 0) or a page view, and for user 0 a purchase worth gold."""
    base = int(time.time() * 1000) - 3_600_000 + wave * 60_000
    records = []
    for n in range(USERS):
        user = f"user-{n}"
        doc: dict[str, Any] = {
            "event_id": f"w{wave}-{n}",
            "user_id": user,
            "type": "signup" if wave == 0 else "page_view",
            "ts": base + n,
        }
        records.append((user.encode(), msgspec.json.encode(doc)))
    if wave == 0:
        purchase = {"event_id": "buy", "user_id": "user-0", "type": "purchase", "ts": base + 10}
        records.append((b"user-0", msgspec.json.encode({**purchase, "amount": "650.00"})))
        records.append((b"user-1", b"{not json"))
    return records


async def test_prometheus_sees_the_key_series_exist_and_move(running: Running) -> None:
    async with httpx.AsyncClient(base_url=running.prometheus_url, timeout=10) as prom:
        await _until(running, prom, 'sum(up{job=~"pulse-worker|pulse-api"})', _at_least(2))

        first = _events(0)
        await _produce(running, first)
        await _until(running, prom, "sum(pulse_events_consumed_total)", _at_least(len(first)))
        second = _events(1)
        await _produce(running, second)
        # events consumed rising
        total = len(first) + len(second)
        await _until(running, prom, "sum(pulse_events_consumed_total)", _at_least(total))
        rising = await _query(prom, "sum(increase(pulse_events_consumed_total[2m]))")
        assert (_scalar(rising) or 0) > 0

        outputs = await _until(
            running,
            prom,
            "sum by (kind) (pulse_outputs_total)",
            lambda r: {s["metric"]["kind"] for s in r} >= {"lifecycle_changed", "tier_changed"},
        )
        by_kind = {s["metric"]["kind"]: float(s["value"][1]) for s in outputs}
        assert by_kind["lifecycle_changed"] >= USERS  # every user's first stage
        dlq = await _query(prom, 'sum(pulse_dlq_total{reason="invalid_json"})')
        assert _scalar(dlq) == 1

        # Stage and tier gauges (the worker refreshes them every 15 s).
        await _until(running, prom, "sum(pulse_users_by_stage)", _at_least(USERS), timeout=45)
        stages = await _query(prom, "sum by (stage) (pulse_users_by_stage)")
        assert {s["metric"]["stage"]: float(s["value"][1]) for s in stages}["new"] == USERS
        tiers = await _query(prom, "sum by (tier) (pulse_users_by_tier)")
        assert {s["metric"]["tier"]: float(s["value"][1]) for s in tiers}["gold"] == 1
        await _until(
            running,
            prom,
            "pulse_consumer_lag",
            lambda r: {s["metric"]["partition"] for s in r} == {"0", "1"},
            timeout=30,
        )

        # Latency histograms: observations counted, percentiles computable.
        for histogram in ("pulse_consume_to_emit_seconds", "pulse_event_time_to_emit_seconds"):
            count = await _query(prom, f"sum({histogram}_count)")
            assert (_scalar(count) or 0) > 0, histogram
            p99 = await _query(
                prom, f"histogram_quantile(0.99, sum by (le) (rate({histogram}_bucket[5m])))"
            )
            value = _scalar(p99)
            assert value is not None and math.isfinite(value), histogram

        last = await _query(prom, "time() - max(pulse_last_event_consumed_timestamp_seconds)")
        assert 0 <= (_scalar(last) or -1) < 120

        # The API's request metrics, from real HTTP calls.
        async with httpx.AsyncClient(base_url=running.api_url, timeout=10) as api:
            assert (await api.get("/healthz")).status_code == 200
            stats = await api.get("/v1/stats", headers={"X-API-Key": KEY})
            assert stats.status_code == 200, stats.text
        await _until(
            running,
            prom,
            'sum(pulse_api_requests_total{route="/v1/stats",status="200"})',
            _at_least(1),
        )

        # The production rules load and evaluate without errors against real series.
        r = (await prom.get("/api/v1/rules")).json()
        rules = [rule for group in r["data"]["groups"] for rule in group["rules"]]
        assert len(rules) >= 20
        assert {rule["health"] for rule in rules} == {"ok"}, [
            (rule["name"], rule.get("lastError")) for rule in rules if rule["health"] != "ok"
        ]


async def test_every_dashboard_query_runs_on_prometheus(running: Running) -> None:
    async with httpx.AsyncClient(base_url=running.prometheus_url, timeout=10) as prom:
        await _until(running, prom, 'sum(up{job=~"pulse-worker|pulse-api"})', _at_least(2))
        for path in sorted(DASHBOARDS.glob("*.json")):
            board = json.loads(path.read_text())
            for panel in board["panels"]:
                for target in panel.get("targets", []):
                    # _query asserts that Prometheus parsed and ran the query
                    await _query(prom, grafana_to_promql(target["expr"]))


@pytest.mark.parametrize("endpoint", ["worker", "api"])
async def test_promtool_accepts_the_exposition(running: Running, endpoint: str) -> None:
    promtool = require_prometheus_tool("promtool")
    url = running.worker_url if endpoint == "worker" else running.api_url + "/metrics"
    deadline = time.monotonic() + 30
    async with httpx.AsyncClient(timeout=10) as client:
        while True:
            try:
                response = await client.get(url)
                break
            except httpx.TransportError:
                if time.monotonic() > deadline:
                    raise
                await asyncio.sleep(0.3)
    assert response.status_code == 200
    assert b"pulse_" in response.content
    result = subprocess.run(
        [promtool, "check", "metrics"],
        input=response.content,
        capture_output=True,
        timeout=30,
        check=False,
    )
    assert result.returncode == 0, (result.stdout + result.stderr).decode()
    assert result.stdout.strip() == b"", result.stdout.decode()
