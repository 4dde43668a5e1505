"""docker-compose.yml: the structure the production path needs (KRaft Kafka, Redis with AOF, a
topic-init job, scalable workers on rocksdb:// volumes, the API, Prometheus, Grafana), every
PULSE_* variable a real setting, and `docker compose config` accepting the file when a Compose
client is installed (no Docker engine is needed for that)."""

from __future__ import annotations

import json
import re
import subprocess
from typing import Any

import pytest
import yaml

from services.settings import ApiSettings
from streams.settings import WorkerSettings

from .conftest import COMPOSE_FILE, ROOT, compose_command

SERVICES = {"kafka", "redis", "topics", "worker", "api", "prometheus", "grafana"}
ONE_SHOT = {"topics"}
PINNED = re.compile(r"^[\w./-]+:v?\d+\.\d+(\.\d+)?[\w.-]*(@sha256:[0-9a-f]{64})?$")


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    """The file as written (anchors and merge keys resolved by PyYAML)."""
    doc: dict[str, Any] = yaml.safe_load(COMPOSE_FILE.read_text())
    return doc


def _env(service: dict[str, Any]) -> dict[str, str]:
    env = service.get("environment") or {}
    return {str(k): str(v) for k, v in env.items()}


def test_every_service_is_there(compose: dict[str, Any]) -> None:
    assert set(compose["services"]) == SERVICES


def test_every_long_running_service_has_a_health_check(compose: dict[str, Any]) -> None:
    for name, service in compose["services"].items():
        check = service.get("healthcheck") or {}
        if name in ONE_SHOT:
            # A job that exits: dependents wait for its successful completion instead.
            assert check.get("disable") is True, name
            continue
        assert check.get("test"), f"{name} has no health check"
        assert not check.get("disable"), name
        assert check.get("interval") and check.get("retries"), name


def test_images_are_pinned_to_versions(compose: dict[str, Any]) -> None:
    for name, service in compose["services"].items():
        image = service["image"]
        if "build" in service:
            assert image.startswith("pulse:"), name  # built from the Dockerfile here
            continue
        assert PINNED.match(image), f"{name}: {image} is not pinned to a version"
        assert not image.endswith(":latest")
    images = {s["image"].split(":")[0] for s in compose["services"].values()}
    assert {"apache/kafka", "redis", "prom/prometheus", "grafana/grafana"} <= images


def test_kafka_runs_in_kraft_mode_with_a_persistent_log(compose: dict[str, Any]) -> None:
    kafka = compose["services"]["kafka"]
    env = _env(kafka)
    assert env["KAFKA_PROCESS_ROLES"] == "broker,controller"
    assert "CONTROLLER" in env["KAFKA_CONTROLLER_LISTENER_NAMES"]
    assert not any("ZOOKEEPER" in k for k in env)
    assert any(v.endswith(":" + env["KAFKA_LOG_DIRS"]) for v in kafka["volumes"])
    assert "PLAINTEXT://kafka:9092" in env["KAFKA_ADVERTISED_LISTENERS"]


def test_redis_persists_with_append_only_file(compose: dict[str, Any]) -> None:
    redis = compose["services"]["redis"]
    command = [str(c) for c in redis["command"]]
    assert command[command.index("--appendonly") + 1] == "yes"
    assert any(v.endswith(":/data") for v in redis["volumes"])


def test_topic_init_takes_partitions_and_replication_from_configuration(
    compose: dict[str, Any],
) -> None:
    services = compose["services"]
    env = _env(services["topics"])
    assert services["topics"]["command"] == ["pulse", "topics"]
    assert env["PULSE_PARTITIONS"].startswith("${PULSE_PARTITIONS")
    assert env["PULSE_REPLICATION_FACTOR"].startswith("${PULSE_REPLICATION_FACTOR")
    for dependent in ("worker", "api"):
        condition = services[dependent]["depends_on"]["topics"]["condition"]
        assert condition == "service_completed_successfully"


def test_workers_scale_out_on_rocksdb_state_in_their_own_volume(
    compose: dict[str, Any],
) -> None:
    worker = compose["services"]["worker"]
    env = _env(worker)
    assert worker["command"] == ["pulse", "worker"]
    assert env["PULSE_STORE"] == "rocksdb://"
    assert env["PULSE_BROKER_URL"] == "kafka://kafka:9092"
    assert env["PULSE_TANSU_COMPAT"] == "false"
    assert env["PULSE_METRICS_HOST"] == "0.0.0.0"
    data = [v for v in worker["volumes"] if isinstance(v, dict)]
    # An anonymous volume: each replica of `--scale worker=N` gets its own store.
    assert [(v["type"], v["target"], v.get("source")) for v in data] == [
        ("volume", env["PULSE_DATA_DIR"], None)
    ]
    # Anything fixed per container would stop `--scale worker=3`.
    assert "container_name" not in worker
    assert "ports" not in worker


def test_every_pulse_variable_is_a_real_setting(compose: dict[str, Any]) -> None:
    fields = set(WorkerSettings.model_fields) | set(ApiSettings.model_fields)
    for name, service in compose["services"].items():
        for key in _env(service):
            if key.startswith("PULSE_"):
                assert key[len("PULSE_") :].lower() in fields, f"{name}: {key} is no setting"


def test_prometheus_and_grafana_mount_the_deploy_files(compose: dict[str, Any]) -> None:
    services = compose["services"]
    prometheus = dict(v.split(":")[:2] for v in services["prometheus"]["volumes"])
    assert prometheus["./deploy/prometheus/prometheus.yml"] == "/etc/prometheus/prometheus.yml"
    assert prometheus["./deploy/prometheus/rules"] == "/etc/prometheus/rules"
    for source in list(prometheus) + [v.split(":")[0] for v in services["grafana"]["volumes"]]:
        if source.startswith("./"):
            assert (ROOT / source).exists(), source


def test_published_ports_bind_loopback_only(compose: dict[str, Any]) -> None:
    for name, service in compose["services"].items():
        for port in service.get("ports", []):
            assert str(port).startswith("127.0.0.1:"), f"{name}: {port}"


def test_docker_compose_config_accepts_the_file() -> None:
    command = compose_command()
    if command is None:
        pytest.skip("no Docker Compose v2+ client (`docker compose` or docker-compose) here")
    result = subprocess.run(
        [*command, "-f", str(COMPOSE_FILE), "config", "--format", "json"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        cwd=ROOT,
    )
    assert result.returncode == 0, result.stderr
    resolved = json.loads(result.stdout)
    services = resolved["services"]
    assert set(services) == SERVICES
    # Interpolated defaults: the topic job and the workers agree on the partition count.
    partitions = {services[s]["environment"]["PULSE_PARTITIONS"] for s in ("topics", "worker")}
    assert len(partitions) == 1
    assert services["kafka"]["environment"]["KAFKA_NUM_PARTITIONS"] in partitions
