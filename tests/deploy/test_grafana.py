"""The Grafana dashboards and their provisioning: every panel's query reads metrics (and label
values) the service really exports, and each dashboard shows what the issue asks of it."""

from __future__ import annotations

import json
from typing import Any

import pytest
import yaml

from .conftest import COMPOSE_FILE, DASHBOARDS, DEPLOY, exported_metrics, parse_query, unknown_names

PROVISIONING = DEPLOY / "grafana" / "provisioning"


def _dashboards() -> dict[str, dict[str, Any]]:
    return {p.name: json.loads(p.read_text()) for p in sorted(DASHBOARDS.glob("*.json"))}


def _panels(dashboard: dict[str, Any]) -> list[dict[str, Any]]:
    """Every panel, including those nested in collapsed rows."""
    out: list[dict[str, Any]] = []
    for panel in dashboard["panels"]:
        out.append(panel)
        out.extend(panel.get("panels", []))
    return out


def _queries(dashboard: dict[str, Any]) -> list[tuple[str, str]]:
    return [
        (panel["title"], target["expr"])
        for panel in _panels(dashboard)
        for target in panel.get("targets", [])
    ]


def _metrics_by_panel(dashboard: dict[str, Any]) -> dict[str, set[str]]:
    out: dict[str, set[str]] = {}
    for title, expr in _queries(dashboard):
        out.setdefault(title, set()).update(s.metric for s in parse_query(expr).selectors)
    return out


def test_both_dashboards_exist_with_unique_ids_and_the_datasource_variable() -> None:
    boards = _dashboards()
    assert set(boards) == {"pulse-pipeline.json", "pulse-lifecycle.json"}
    assert len({b["uid"] for b in boards.values()}) == len(boards)
    for name, board in boards.items():
        ids = [p["id"] for p in _panels(board)]
        assert len(ids) == len(set(ids)), f"{name}: duplicate panel ids"
        variables = {v["name"]: v for v in board["templating"]["list"]}
        assert variables["datasource"]["type"] == "datasource"
        assert variables["datasource"]["query"] == "prometheus"
        for panel in _panels(board):
            if panel["type"] != "row":
                assert panel["datasource"]["uid"] == "${datasource}", (name, panel["title"])
                assert panel.get("targets"), (name, panel["title"])


@pytest.mark.parametrize("name", ["pulse-pipeline.json", "pulse-lifecycle.json"])
def test_every_panel_query_names_metrics_the_service_exports(name: str) -> None:
    exported = exported_metrics()
    board = _dashboards()[name]
    problems = {
        f"{title}: {expr}": p
        for title, expr in _queries(board)
        if (p := unknown_names(expr, exported, {}))
    }
    assert problems == {}


def test_pipeline_dashboard_shows_throughput_lag_latency_dead_letters_and_outputs() -> None:
    board = _dashboards()["pulse-pipeline.json"]
    used = set().union(*_metrics_by_panel(board).values())
    assert {
        "pulse_events_consumed_total",  # throughput
        "pulse_consumer_lag",  # lag
        "pulse_consume_to_emit_seconds_bucket",  # latency percentiles
        "pulse_event_time_to_emit_seconds_bucket",
        "pulse_dlq_total",  # dead letters
        "pulse_outputs_total",  # outputs
    } <= used
    exprs = [expr for _, expr in _queries(board)]
    assert any("histogram_quantile(0.99" in e and "consume_to_emit" in e for e in exprs)
    assert any("sum by (reason)" in e and "pulse_dlq_total" in e for e in exprs)
    assert any("sum by (kind)" in e and "pulse_outputs_total" in e for e in exprs)


def test_lifecycle_dashboard_shows_stages_tiers_warnings_per_hour_and_reactivations() -> None:
    board = _dashboards()["pulse-lifecycle.json"]
    exprs = [expr for _, expr in _queries(board)]
    assert any("sum by (stage) (pulse_users_by_stage)" in e for e in exprs)
    assert any("sum by (tier) (pulse_users_by_tier)" in e for e in exprs)
    assert any('kind="churn_warning"' in e and "[1h]" in e for e in exprs)
    assert any('stage="reactivated"' in e for e in exprs)


def test_provisioning_points_grafana_at_the_dashboards_and_the_compose_prometheus() -> None:
    compose = yaml.safe_load(COMPOSE_FILE.read_text())
    grafana = compose["services"]["grafana"]
    mounts = dict(v.split(":")[:2] for v in grafana["volumes"])
    dashboards_path = mounts["./deploy/grafana/dashboards"]
    assert mounts["./deploy/grafana/provisioning"] == "/etc/grafana/provisioning"

    provider = yaml.safe_load((PROVISIONING / "dashboards" / "pulse.yml").read_text())
    assert [p["options"]["path"] for p in provider["providers"]] == [dashboards_path]

    datasources = yaml.safe_load((PROVISIONING / "datasources" / "prometheus.yml").read_text())
    (source,) = datasources["datasources"]
    assert source["type"] == "prometheus"
    assert source["url"] == "http://prometheus:9090"
    assert "prometheus" in compose["services"]
    assert source["isDefault"] is True
