"""The Prometheus configuration and alert rules: valid for promtool, unit-tested with
`promtool test rules`, and written against metrics the service really exports."""

from __future__ import annotations

import subprocess

import yaml

from .conftest import (
    PROMETHEUS_CONFIG,
    RULE_TESTS,
    RULES,
    exported_metrics,
    parse_query,
    unknown_names,
)


def _rules() -> list[dict[str, object]]:
    doc = yaml.safe_load(RULES.read_text())
    return [rule for group in doc["groups"] for rule in group["rules"]]


def _recorded() -> dict[str, set[str]]:
    """Recording-rule names with the labels they keep (the `by (...)` of their expression)."""
    return {
        str(r["record"]): parse_query(str(r["expr"])).grouping - {"le"}
        for r in _rules()
        if "record" in r
    }


def _run(cmd: list[str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120, check=False)


def test_rules_pass_their_promtool_unit_tests(promtool: str) -> None:
    result = _run([promtool, "test", "rules", str(RULE_TESTS)])
    assert result.returncode == 0, result.stdout + result.stderr


def test_rule_and_scrape_config_files_are_valid(promtool: str) -> None:
    rules = _run([promtool, "check", "rules", str(RULES)])
    assert rules.returncode == 0, rules.stdout + rules.stderr
    # check config also loads the rule files the config names (rules/*.yml).
    config = _run([promtool, "check", "config", str(PROMETHEUS_CONFIG)])
    assert config.returncode == 0, config.stdout + config.stderr
    assert "rules/pulse.yml" in config.stdout + config.stderr


def test_the_alerts_operators_need_exist_with_severity_and_text() -> None:
    alerts = {str(r["alert"]): r for r in _rules() if "alert" in r}
    wanted = {
        "PulseConsumerLagGrowing",  # consumer lag growing
        "PulseDeadLetterRateHigh",  # DLQ rate above threshold
        "PulseNoEventsConsumed",  # no events consumed for N minutes
        "PulseWarningRateSpike",  # warning rate anomaly (up)
        "PulseWarningRateDrop",  # warning rate anomaly (down)
        "PulseViewWriteFailures",  # Redis view write failures
        "PulseApiErrorRatio",  # API 5xx ratio
    }
    assert wanted <= alerts.keys()
    for name, rule in alerts.items():
        labels = rule.get("labels") or {}
        annotations = rule.get("annotations") or {}
        assert isinstance(labels, dict) and isinstance(annotations, dict)
        assert labels.get("severity") in {"warning", "critical"}, name
        assert annotations.get("summary") and annotations.get("description"), name


def test_every_alert_has_a_unit_test() -> None:
    alerts = {str(r["alert"]) for r in _rules() if "alert" in r}
    doc = yaml.safe_load(RULE_TESTS.read_text())
    tested = {t["alertname"] for test in doc["tests"] for t in test.get("alert_rule_test", [])}
    assert alerts - tested == set()
    assert tested - alerts == set(), "a unit test names an alert that does not exist"


def test_every_rule_reads_metrics_the_service_exports() -> None:
    exported = exported_metrics()
    recorded = _recorded()
    problems = {
        str(r.get("alert") or r.get("record")): unknown_names(str(r["expr"]), exported, recorded)
        for r in _rules()
    }
    assert {name: p for name, p in problems.items() if p} == {}
