"""Shared helpers for the deployment tests: where the files are, which tools exist, the metrics
the service really exports (read from its registries) and the metric names a PromQL query uses.

Tool policy: `promtool` and `prometheus` come from Debian's `prometheus` package, which `make
test` installs when we are root (`make prometheus`). A test needing them skips when they are
missing and we are not root, and fails when we are root (the Makefile should have installed
them). The docker compose client and hadolint are optional: tests needing them skip.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
RULES = DEPLOY / "prometheus" / "rules" / "pulse.yml"
RULE_TESTS = DEPLOY / "prometheus" / "tests" / "pulse.test.yml"
PROMETHEUS_CONFIG = DEPLOY / "prometheus" / "prometheus.yml"
DASHBOARDS = DEPLOY / "grafana" / "dashboards"
COMPOSE_FILE = ROOT / "docker-compose.yml"
DOCKERFILE = ROOT / "Dockerfile"


def find_tool(name: str) -> str | None:
    """`name` on PATH, or next to this interpreter (a tool installed into the virtualenv)."""
    found = shutil.which(name)
    if found:
        return found
    beside = Path(sys.executable).parent / name
    return str(beside) if beside.exists() else None


def require_prometheus_tool(name: str) -> str:
    """Path of `prometheus` or `promtool`; skip (not root) or fail (root) when missing."""
    path = find_tool(name)
    if path:
        return path
    if os.geteuid() == 0:
        pytest.fail(f"{name} is missing although we run as root: `make prometheus` installs it")
    pytest.skip(f"{name} not installed and not root (`make prometheus` installs Debian's package)")


@pytest.fixture(scope="session")
def promtool() -> str:
    return require_prometheus_tool("promtool")


@pytest.fixture(scope="session")
def prometheus_bin() -> str:
    return require_prometheus_tool("prometheus")


def compose_command() -> list[str] | None:
    """`docker compose` (the CLI plugin) or a standalone Compose v2+ binary, else None."""
    docker = shutil.which("docker")
    if docker:
        probe = subprocess.run(
            [docker, "compose", "version"], capture_output=True, text=True, check=False
        )
        if probe.returncode == 0:
            return [docker, "compose"]
    standalone = find_tool("docker-compose")
    if standalone:
        probe = subprocess.run(
            [standalone, "version", "--short"], capture_output=True, text=True, check=False
        )
        # Compose v1 (Debian's docker-compose 1.29) implements an older file format.
        major = probe.stdout.strip().lstrip("v").split(".")[0]
        if probe.returncode == 0 and major.isdigit() and int(major) >= 2:
            return [standalone]
    return None


# --- the metrics Pulse exports ---------------------------------------------------------------


@dataclass
class Exported:
    """Series names Prometheus stores for the service's metrics, with their label names."""

    labels: dict[str, set[str]] = field(default_factory=dict)
    # values a label can take, where the code fixes them (kind, stage, tier, reason)
    values: dict[str, set[str]] = field(default_factory=dict)

    def add(self, name: str, kind: str, labelnames: set[str]) -> None:
        suffixes = {
            "counter": ["_total", "_created"],
            "histogram": ["_bucket", "_sum", "_count", "_created"],
            "summary": ["", "_sum", "_count", "_created"],
            "gauge": [""],
            "info": ["_info"],
            "stateset": [""],
            "enum": [""],
        }[kind]
        for suffix in suffixes:
            extra = {"le"} if suffix == "_bucket" else set()
            self.labels[name + suffix] = labelnames | extra


def _registry_metrics(registry: object, out: Exported) -> None:
    """Add every metric family of a prometheus-client registry, with its label names.

    Names and types come from the public `collect()`; label names of a labelled metric with
    no child yet only exist on the collector object, read from prometheus-client's
    `_names_to_collectors` / `_labelnames` (the client is pinned in pyproject.toml).
    """
    collectors = getattr(registry, "_names_to_collectors", {})
    for family in registry.collect():  # type: ignore[attr-defined]
        collector = collectors.get(family.name) or collectors.get(family.name + "_total")
        labelnames = set(getattr(collector, "_labelnames", ()))
        out.add(family.name, family.type, labelnames)


def exported_metrics() -> Exported:
    """Everything `pulse worker` and `pulse api` export, from their real registries."""
    from services.app import create_app
    from services.settings import ApiSettings
    from streams import metrics as worker_metrics
    from streams.core.contract import Reason
    from streams.core.lifecycle import Stage
    from streams.core.outputs import Kind
    from streams.core.policy import Policy

    out = Exported()
    _registry_metrics(worker_metrics.REGISTRY, out)
    app = create_app(ApiSettings(api_keys="introspection:read"))
    _registry_metrics(app.state.metrics.registry, out)
    # What Prometheus adds to every scrape.
    out.labels["up"] = set()
    out.values = {
        "kind": set(Kind.ALL) | {"duplicate", "redelivered"},
        "stage": set(Stage.ALL),
        "tier": set(Policy().tier_names),
        "reason": {v for k, v in vars(Reason).items() if k.isupper() and isinstance(v, str)},
    }
    return out


# --- PromQL: which metrics a query reads ------------------------------------------------------

_TOKEN = re.compile(
    r"""(?P<string>"(?:\\.|[^"\\])*"|'(?:\\.|[^'\\])*')
      |(?P<braces>\{[^}]*\})
      |(?P<range>\[[^\]]*\])
      |(?P<number>(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?[smhdwy]?)
      |(?P<ident>[A-Za-z_:][A-Za-z0-9_:]*)
      |(?P<other>\S)""",
    re.VERBOSE,
)
_LABEL_LIST_KEYWORDS = {"by", "without", "on", "ignoring", "group_left", "group_right"}
_KEYWORDS = _LABEL_LIST_KEYWORDS | {"and", "or", "unless", "bool", "offset", "inf", "nan"}
_AGGREGATIONS = {
    "sum",
    "min",
    "max",
    "avg",
    "group",
    "stddev",
    "stdvar",
    "count",
    "count_values",
    "bottomk",
    "topk",
    "quantile",
}
_MATCHER = re.compile(r'\s*([A-Za-z_][A-Za-z0-9_]*)\s*(=~|!~|!=|=)\s*"((?:\\.|[^"\\])*)"\s*,?')


@dataclass
class Selector:
    metric: str
    matchers: list[tuple[str, str, str]]


@dataclass
class Query:
    selectors: list[Selector]
    grouping: set[str]


def grafana_to_promql(expr: str) -> str:
    """Replace Grafana's macros and variables with values Prometheus accepts."""
    expr = re.sub(r"\$__(rate_interval|interval|range)\b", "5m", expr)
    return re.sub(r"\$\{?[A-Za-z_][A-Za-z0-9_]*\}?", "x", expr)


def parse_query(expr: str) -> Query:
    """The metric selectors (with label matchers) and grouping labels of a PromQL query."""
    tokens = [
        (m.lastgroup, m.group()) for m in _TOKEN.finditer(grafana_to_promql(expr)) if m.lastgroup
    ]
    selectors: list[Selector] = []
    grouping: set[str] = set()
    i = 0
    while i < len(tokens):
        kind, text = tokens[i]
        following = tokens[i + 1][1] if i + 1 < len(tokens) else ""
        if kind == "ident" and text.lower() in _LABEL_LIST_KEYWORDS and following == "(":
            j = i + 2
            while j < len(tokens) and tokens[j][1] != ")":
                if tokens[j][0] == "ident":
                    grouping.add(tokens[j][1])
                j += 1
            i = j + 1
            continue
        if kind == "ident":
            is_call = following == "(" or (
                text in _AGGREGATIONS and following.lower() in _LABEL_LIST_KEYWORDS
            )
            if not is_call and text.lower() not in _KEYWORDS:
                matchers: list[tuple[str, str, str]] = []
                if following.startswith("{"):
                    matchers = [m.groups() for m in _MATCHER.finditer(following[1:-1])]
                selectors.append(Selector(text, matchers))
        i += 1
    return Query(selectors, grouping)


def unknown_names(expr: str, exported: Exported, recorded: dict[str, set[str]]) -> list[str]:
    """What in `expr` the service does not export: metric names, label names, label values.

    `recorded`: recording-rule names with the labels they keep. Empty when all is known.
    """
    known = {**exported.labels, **recorded}
    query = parse_query(expr)
    problems: list[str] = []
    if not query.selectors:
        problems.append("no metric in the query")
    used_labels: set[str] = {"job", "instance"}
    for sel in query.selectors:
        if sel.metric not in known:
            problems.append(f"metric {sel.metric!r} is not exported")
            continue
        labels = known[sel.metric] | {"job", "instance"}
        used_labels |= labels
        for label, op, value in sel.matchers:
            if label not in labels:
                problems.append(f"{sel.metric} has no label {label!r}")
            elif op == "=" and label in exported.values and value not in exported.values[label]:
                problems.append(f"{sel.metric}{{{label}}} never takes the value {value!r}")
    problems += [f"grouping by unknown label {g!r}" for g in sorted(query.grouping - used_labels)]
    return problems
